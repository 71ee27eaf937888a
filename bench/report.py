"""report.py -- turn bench/out/results.txt (loadgen's RESULT lines) into
the Markdown tables of docs/performance.md.

    python3 bench/report.py bench/out/results.txt

Labels are SERVER/CONFIG. The raw C server ("c") runs first and last in
one run; its two figures are averaged into the reference every ratio is
taken to, and their difference is printed as the run's drift.
"""
import sys
from collections import OrderedDict

ECHO_ORDER = ["moonsock", "threading", "asyncio", "uvloop", "cqueues",
              "luv", "tarantool"]


def parse(path):
    rows = []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if not parts or parts[0] not in ("RESULT", "SKIP", "ROUNDS"):
                continue
            kv = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
            kv["_kind"] = parts[0]
            rows.append(kv)
    return rows


def num(kv, key):
    try:
        return float(kv.get(key, "nan"))
    except ValueError:
        return float("nan")


def fmt(v, digits=None):
    if v != v:
        return "–"
    if digits is None:
        if abs(v) >= 1000:
            return "{:,.0f}".format(v)
        if abs(v) >= 100:
            return "{:.0f}".format(v)
        if abs(v) >= 10:
            return "{:.1f}".format(v)
        return "{:.2f}".format(v)
    return "{:.{}f}".format(v, digits)


def main(path):
    rows = parse(path)
    data = OrderedDict()          # (server, config) -> [kv, ...]
    skipped = []
    rounds = 1
    for kv in rows:
        if kv["_kind"] == "ROUNDS":
            rounds = int(kv.get("n", "1"))
            continue
        label = kv.get("label", "-")
        server, _, config = label.partition("/")
        if kv["_kind"] == "SKIP":
            skipped.append((server, config, kv.get("reason", "")))
            continue
        data.setdefault((server, config), []).append(kv)

    def first(server, config):
        v = data.get((server, config))
        return v[0] if v else None

    def median(vals):
        vals = sorted(vals)
        n = len(vals)
        if n == 0:
            return float("nan")
        return vals[n // 2] if n % 2 else (vals[n // 2 - 1] + vals[n // 2]) / 2

    def value(server, config, key):
        """The median over the rounds of the runs without errors (all
        runs if every one had errors)."""
        runs = data.get((server, config), [])
        good = [r for r in runs if r.get("errors") == "0"] or runs
        return median([v for v in (num(r, key) for r in good) if v == v])

    def cref(config, key, server="c"):
        """The limit: median of all its runs (first and last of every
        round), and the drift from its first run to its last."""
        runs = data.get((server, config), [])
        vals = [num(r, key) for r in runs if r.get("errors") == "0"]
        vals = [v for v in vals if v == v]
        if not vals:
            return float("nan"), float("nan")
        drift = (vals[-1] / vals[0] - 1) if len(vals) > 1 and vals[0] else 0
        return median(vals), drift

    out = []
    w = out.append
    present = [s for s in ECHO_ORDER
               if any(k[0] == s for k in data)]

    skipped_set = {(sv, cf) for sv, cf, _ in skipped}

    def cell(server, config, key, ref, lower_better):
        r = first(server, config)
        if r is None:
            # "skipped" when run.sh said so; "–" when never attempted.
            if (server, config) in skipped_set or \
                    (server, "all") in skipped_set:
                return "skipped"
            return "–"
        v = value(server, config, key)
        err = max(int(float(x.get("errors", "0")))
                  for x in data.get((server, config), [r]))
        s = fmt(v)
        if ref == ref and ref and v == v:
            s += " ({:.2f}×)".format(v / ref)
        if err:
            s += " **{} err**".format(err)
        return s

    def table(title, configs, key, lower_better, note, server_list=None,
              ref_server="c"):
        server_list = server_list or present
        w("### " + title)
        w("")
        if note:
            w(note)
            w("")
        w("| server | " + " | ".join(n for _, n in configs) + " |")
        w("|---" * (len(configs) + 1) + "|")
        refs = [cref(c, key, ref_server) for c, _ in configs]
        w("| raw C (limit) | " + " | ".join(
            fmt(m) + (" (drift {:+.0%})".format(d) if d == d else "")
            for m, d in refs) + " |")
        for s in server_list:
            w("| {} | ".format(s) + " | ".join(
                cell(s, c, key, refs[i][0], lower_better)
                for i, (c, _) in enumerate(configs)) + " |")
        w("")

    echo_cfgs = [("e1", "1×64 B"), ("e100", "100×64 B"),
                 ("e1000", "1000×64 B"), ("e64k", "10×64 KiB"),
                 ("pipe", "10×16 pipelined")]
    table("Server CPU per echoed message, µs (lower is better)",
          echo_cfgs, "cpu_per_msg_us", True,
          "utime+stime of the server process over the measured window, "
          "divided by messages echoed. Columns are connections × message "
          "size; ratios are to the raw C server in the same run."
          + (" Every echo figure is the median of {} rounds; the limit's "
             "is the median of its {} runs (first and last of every round)"
             ", its drift from the first to the last.".format(
                 rounds, 2 * rounds) if rounds > 1 else ""))
    table("Echo throughput, messages/s (higher is better)",
          echo_cfgs, "rate", False,
          "Ping-pong: each connection has one message in flight (pipe: "
          "16). With the load generator on the other core this is often "
          "the client's ceiling, not the server's.")
    table("Echo throughput, MB/s one way (higher is better)",
          [("e64k", "10×64 KiB"), ("stream", "1 conn, 1 GiB stream")],
          "mbps", False, "")
    table("p99 latency, µs (lower is better)", echo_cfgs, "p99_us", True,
          "")
    # moonsock --workers K holds 50k where one process may not (run.sh).
    idle_list = present + [s for s in ("moonsock-workers",)
                           if first(s, "idle50k") is not None]
    table("Idle connections: server memory per connection, bytes "
          "(lower is better)", [("idle10k", "10k"), ("idle50k", "50k")],
          "bytes_per_conn", True,
          "Growth of the server's VmRSS from before the first connect to "
          "the hold, divided by connections held; each connection has "
          "echoed one byte, so its handler is waiting in recv. "
          "moonsock-workers is `moonsock --workers K` (the RSS of the "
          "supervisor and all K workers) against a load generator split "
          "over K processes, for a machine whose descriptor limit is "
          "below 50,000 per process.", idle_list)
    table("Idle connections held (of those opened)",
          [("idle10k", "10k"), ("idle50k", "50k")], "held", False, "",
          idle_list)

    # Chat
    w("### Chat fan-out (scripts/chat.lua vs the raw C chat limit)")
    w("")
    w("| server | deliveries/s | CPU µs/delivery | p50 µs | p99 µs | "
      "errors |")
    w("|---|---|---|---|---|---|")
    rate_ref, rd = cref("chat", "rate", "c-chat")
    cpu_ref, cd = cref("chat", "cpu_per_msg_us", "c-chat")
    w("| raw C (limit) | {} (drift {:+.0%}) | {} (drift {:+.0%}) | | | |"
      .format(fmt(rate_ref), rd if rd == rd else 0, fmt(cpu_ref),
              cd if cd == cd else 0))
    for s in ("moonsock-chat",):
        r = first(s, "chat")
        if r is None:
            w("| {} | not available | | | | |".format(s))
            continue
        w("| {} | {} ({:.2f}×) | {} ({:.2f}×) | {} | {} | {} |".format(
            s, fmt(num(r, "rate")), num(r, "rate") / rate_ref,
            fmt(num(r, "cpu_per_msg_us")),
            num(r, "cpu_per_msg_us") / cpu_ref, fmt(num(r, "p50_us")),
            fmt(num(r, "p99_us")), r.get("errors")))
    w("")

    # Upload / download
    w("### Upload and download (scripts/upload.lua vs nc, same disk)")
    w("")
    w("| transfer | MB/s | ratio to nc | server CPU s |")
    w("|---|---|---|---|")
    for kind in ("upload", "download"):
        nc = first("nc", kind)
        ncf = first("nc+fsync", kind)
        ref = num(nc, "mbps") if nc else float("nan")
        if nc:
            w("| nc {} | {} | 1.00× | |".format(kind, fmt(num(nc, "mbps"))))
        if ncf:
            w("| nc {} + fsync | {} | {:.2f}× | |".format(
                kind, fmt(num(ncf, "mbps")), num(ncf, "mbps") / ref))
        r = first("moonsock", "put" if kind == "upload" else "get")
        if r:
            w("| moonsock {} | {} | {:.2f}× | {} |".format(
                kind, fmt(num(r, "mbps")), num(r, "mbps") / ref,
                fmt(num(r, "srv_cpu_s"))))
        else:
            w("| moonsock {} | not available | | |".format(kind))
    w("")

    # Reload
    w("### Reload latency under load (file saved → new code answering)")
    w("")
    vals = []
    for (s, c), runs in data.items():
        if s == "moonsock" and c.startswith("reload"):
            vals += [num(r, "reload_ms") for r in runs]
    if vals:
        w("| run | " + " | ".join(str(i + 1) for i in range(len(vals)))
          + " |")
        w("|---" * (len(vals) + 1) + "|")
        w("| ms | " + " | ".join(
            fmt(v) if v >= 0 else "no reload" for v in vals) + " |")
    else:
        w("not measured")
    w("")
    if skipped:
        w("Skipped: " + ", ".join("{}/{} ({})".format(*s)
                                  for s in skipped))
        w("")
    print("\n".join(out))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "bench/out/results.txt")
