/*
 * hashlib.c -- _moonsock.hashlib: message digests and HMAC on libcrypto.
 *
 * Two object types over OpenSSL 3's EVP API: a digest ("moonsock.hash",
 * an EVP_MD_CTX) and an HMAC ("moonsock.hmac", an EVP_MAC_CTX). Each is a
 * userdata box holding the context; close, __gc and __close share one
 * path. digest() finalizes a duplicate, so the object keeps accepting
 * update() afterwards, as Python's do. Attributes (digest_size,
 * block_size, name) are read through an __index function, so the objects
 * look like Python's without a Lua wrapper per call.
 *
 * Also here: compare_digest (CRYPTO_memcmp, constant time for equal
 * lengths) and urandom (RAND_bytes), for hmac.lua and secrets.lua.
 * Python's names and exceptions live in hashlib.lua and hmac.lua; this
 * file returns nil, message for an unknown algorithm and raises only for
 * argument mistakes. No hash is written by hand here.
 */
#include <ctype.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>

#include <openssl/crypto.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "msk_bind.h"

#define HASH_MT "moonsock.hash"
#define HMAC_MT "moonsock.hmac"
#define NAMELEN 32

typedef struct hash_box {
    EVP_MD_CTX *ctx;           /* NULL: closed */
    char name[NAMELEN];        /* Python's name, lower case */
} hash_box;

typedef struct hmac_box {
    EVP_MAC_CTX *ctx;          /* NULL: closed */
    char name[NAMELEN];        /* the digest's Python name */
    int digest_size, block_size;
} hmac_box;

/* Python's algorithm name -> OpenSSL's. Most differ only by '_' vs '-'
 * ("sha3_256" is "SHA3-256"); the BLAKE2 pair names a digest size. */
static void osslname(const char *py, char *out, size_t outlen)
{
    size_t i;
    if (strcmp(py, "blake2b") == 0)
        py = "blake2b512";
    else if (strcmp(py, "blake2s") == 0)
        py = "blake2s256";
    for (i = 0; py[i] != '\0' && i + 1 < outlen; i++)
        out[i] = py[i] == '_' ? '-' : py[i];
    out[i] = '\0';
}

/* Fetch the digest for a Python name (case-insensitive); NULL if OpenSSL
 * has none or it is an extendable-output function (shake needs a length
 * that digest() does not take). The caller frees the result. */
static EVP_MD *fetch_md(const char *name, char pyname[NAMELEN])
{
    char oname[NAMELEN];
    EVP_MD *md;
    size_t i;

    if (strlen(name) >= NAMELEN)
        return NULL;
    for (i = 0; name[i] != '\0'; i++)
        pyname[i] = (char)tolower((unsigned char)name[i]);
    pyname[i] = '\0';
    osslname(pyname, oname, sizeof oname);
    md = EVP_MD_fetch(NULL, oname, NULL);
    if (md != NULL && (EVP_MD_get_flags(md) & EVP_MD_FLAG_XOF)) {
        EVP_MD_free(md);
        return NULL;
    }
    return md;
}

static int pushfail(lua_State *L, const char *msg)   /* [-0, +2] */
{
    luaL_pushfail(L);
    lua_pushstring(L, msg);
    return 2;
}

static void pushhex(lua_State *L, const unsigned char *p, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    luaL_Buffer b;
    char *out = luaL_buffinitsize(L, &b, 2 * n);
    size_t i;
    for (i = 0; i < n; i++) {
        out[2 * i] = hex[p[i] >> 4];
        out[2 * i + 1] = hex[p[i] & 15];
    }
    luaL_pushresultsize(&b, 2 * n);
}

/* ---- digests --------------------------------------------------------- */

static hash_box *newhash(lua_State *L)                 /* [-0, +1, m] */
{
    hash_box *box = lua_newuserdatauv(L, sizeof *box, 0);
    box->ctx = NULL;                 /* closed until the context exists */
    box->name[0] = '\0';
    luaL_setmetatable(L, HASH_MT);
    return box;
}

static hash_box *checkhash(lua_State *L, int idx)
{
    hash_box *box = luaL_checkudata(L, idx, HASH_MT);
    if (box->ctx == NULL)
        luaL_error(L, "hash object is closed");
    return box;
}

/* new(name [, data]) -> hash | nil, message                  [-0, +1|2] */
static int hash_new(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    size_t len = 0;
    const char *data = luaL_optlstring(L, 2, NULL, &len);
    char pyname[NAMELEN];
    hash_box *box = newhash(L);
    EVP_MD *md = fetch_md(name, pyname);
    int ok;

    if (md == NULL)
        return pushfail(L, "unsupported hash type");
    box->ctx = EVP_MD_CTX_new();
    ok = box->ctx != NULL && EVP_DigestInit_ex2(box->ctx, md, NULL);
    EVP_MD_free(md);                 /* the context keeps its own ref */
    if (!ok)
        return luaL_error(L, "hashlib: cannot initialise %s", name);
    memcpy(box->name, pyname, sizeof box->name);
    if (data != NULL && !EVP_DigestUpdate(box->ctx, data, len))
        return luaL_error(L, "hashlib: update failed");
    return 1;
}

/* h:update(data)                                                 [-0, +0] */
static int hash_update(lua_State *L)
{
    hash_box *box = checkhash(L, 1);
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);
    if (!EVP_DigestUpdate(box->ctx, data, len))
        return luaL_error(L, "hashlib: update failed");
    return 0;
}

/* Finalize a duplicate into md; the original keeps its state. */
static unsigned int hash_final(lua_State *L, hash_box *box,
                               unsigned char *md)
{
    EVP_MD_CTX *dup = EVP_MD_CTX_new();
    unsigned int n = 0;
    int ok = dup != NULL && EVP_MD_CTX_copy_ex(dup, box->ctx)
             && EVP_DigestFinal_ex(dup, md, &n);
    EVP_MD_CTX_free(dup);
    if (!ok)
        luaL_error(L, "hashlib: digest failed");
    return n;
}

/* h:digest() -> bytes                                            [-0, +1] */
static int hash_digest(lua_State *L)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = hash_final(L, checkhash(L, 1), md);
    lua_pushlstring(L, (const char *)md, n);
    return 1;
}

/* h:hexdigest() -> hex string                                    [-0, +1] */
static int hash_hexdigest(lua_State *L)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = hash_final(L, checkhash(L, 1), md);
    pushhex(L, md, n);
    return 1;
}

/* h:copy() -> a new hash with the same state                     [-0, +1] */
static int hash_copy(lua_State *L)
{
    hash_box *box = checkhash(L, 1);
    hash_box *c = newhash(L);
    c->ctx = EVP_MD_CTX_new();
    if (c->ctx == NULL || !EVP_MD_CTX_copy_ex(c->ctx, box->ctx))
        return luaL_error(L, "hashlib: copy failed");
    memcpy(c->name, box->name, sizeof c->name);
    return 1;
}

static int hash_close(lua_State *L)       /* close, __gc and __close */
{
    hash_box *box = luaL_checkudata(L, 1, HASH_MT);
    if (box->ctx != NULL) {
        EVP_MD_CTX_free(box->ctx);
        box->ctx = NULL;
    }
    return 0;
}

static int hash__tostring(lua_State *L)
{
    hash_box *box = luaL_checkudata(L, 1, HASH_MT);
    lua_pushfstring(L, "<%s _hashlib.HASH object @ %p>", box->name,
                    (void *)box);
    return 1;
}

/* h.digest_size, h.block_size, h.name, or a method.              [-0, +1] */
static int hash__index(lua_State *L)
{
    hash_box *box = checkhash(L, 1);
    const char *k = luaL_checkstring(L, 2);
    const EVP_MD *md = EVP_MD_CTX_get0_md(box->ctx);

    if (strcmp(k, "digest_size") == 0)
        lua_pushinteger(L, EVP_MD_get_size(md));
    else if (strcmp(k, "block_size") == 0)
        lua_pushinteger(L, EVP_MD_get_block_size(md));
    else if (strcmp(k, "name") == 0)
        lua_pushstring(L, box->name);
    else
        lua_rawget(L, lua_upvalueindex(1));    /* the method table */
    return 1;
}

/* ---- HMAC ------------------------------------------------------------ */

static hmac_box *newhmac(lua_State *L)                 /* [-0, +1, m] */
{
    hmac_box *box = lua_newuserdatauv(L, sizeof *box, 0);
    box->ctx = NULL;
    box->name[0] = '\0';
    box->digest_size = box->block_size = 0;
    luaL_setmetatable(L, HMAC_MT);
    return box;
}

static hmac_box *checkhmac(lua_State *L, int idx)
{
    hmac_box *box = luaL_checkudata(L, idx, HMAC_MT);
    if (box->ctx == NULL)
        luaL_error(L, "hmac object is closed");
    return box;
}

/* hmac_new(key, digestname [, msg]) -> hmac | nil, message   [-0, +1|2] */
static int hmac_new(lua_State *L)
{
    size_t klen, mlen = 0;
    const char *key = luaL_checklstring(L, 1, &klen);
    const char *name = luaL_checkstring(L, 2);
    const char *msg = luaL_optlstring(L, 3, NULL, &mlen);
    char pyname[NAMELEN], oname[NAMELEN];
    hmac_box *box = newhmac(L);
    EVP_MD *md = fetch_md(name, pyname);
    EVP_MAC *mac;
    OSSL_PARAM params[2];
    int ok;

    if (md == NULL)
        return pushfail(L, "unsupported hash type");
    box->digest_size = EVP_MD_get_size(md);
    box->block_size = EVP_MD_get_block_size(md);
    EVP_MD_free(md);
    memcpy(box->name, pyname, sizeof box->name);
    osslname(pyname, oname, sizeof oname);
    mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (mac == NULL)
        return luaL_error(L, "hmac: HMAC unavailable in libcrypto");
    box->ctx = EVP_MAC_CTX_new(mac);
    EVP_MAC_free(mac);               /* the context keeps its own ref */
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
                                                 oname, 0);
    params[1] = OSSL_PARAM_construct_end();
    /* An empty key is legal in HMAC; pass a valid pointer all the same. */
    ok = box->ctx != NULL
         && EVP_MAC_init(box->ctx, (const unsigned char *)key, klen,
                         params);
    if (!ok)
        return luaL_error(L, "hmac: cannot initialise HMAC-%s", name);
    if (msg != NULL
        && !EVP_MAC_update(box->ctx, (const unsigned char *)msg, mlen))
        return luaL_error(L, "hmac: update failed");
    return 1;
}

static int hmac_update(lua_State *L)                          /* [-0, +0] */
{
    hmac_box *box = checkhmac(L, 1);
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);
    if (!EVP_MAC_update(box->ctx, (const unsigned char *)data, len))
        return luaL_error(L, "hmac: update failed");
    return 0;
}

static size_t hmac_final(lua_State *L, hmac_box *box, unsigned char *md)
{
    EVP_MAC_CTX *dup = EVP_MAC_CTX_dup(box->ctx);
    size_t n = 0;
    int ok = dup != NULL && EVP_MAC_final(dup, md, &n, EVP_MAX_MD_SIZE);
    EVP_MAC_CTX_free(dup);
    if (!ok)
        luaL_error(L, "hmac: digest failed");
    return n;
}

static int hmac_digest(lua_State *L)                          /* [-0, +1] */
{
    unsigned char md[EVP_MAX_MD_SIZE];
    size_t n = hmac_final(L, checkhmac(L, 1), md);
    lua_pushlstring(L, (const char *)md, n);
    return 1;
}

static int hmac_hexdigest(lua_State *L)                       /* [-0, +1] */
{
    unsigned char md[EVP_MAX_MD_SIZE];
    size_t n = hmac_final(L, checkhmac(L, 1), md);
    pushhex(L, md, n);
    return 1;
}

static int hmac_copy(lua_State *L)                            /* [-0, +1] */
{
    hmac_box *box = checkhmac(L, 1);
    hmac_box *c = newhmac(L);
    c->ctx = EVP_MAC_CTX_dup(box->ctx);
    if (c->ctx == NULL)
        return luaL_error(L, "hmac: copy failed");
    memcpy(c->name, box->name, sizeof c->name);
    c->digest_size = box->digest_size;
    c->block_size = box->block_size;
    return 1;
}

static int hmac_close(lua_State *L)
{
    hmac_box *box = luaL_checkudata(L, 1, HMAC_MT);
    if (box->ctx != NULL) {
        EVP_MAC_CTX_free(box->ctx);
        box->ctx = NULL;
    }
    return 0;
}

static int hmac__tostring(lua_State *L)
{
    hmac_box *box = luaL_checkudata(L, 1, HMAC_MT);
    lua_pushfstring(L, "<hmac.HMAC object @ %p>", (void *)box);
    return 1;
}

/* m.digest_size, m.block_size, m.name ("hmac-sha256"), or a method. */
static int hmac__index(lua_State *L)
{
    hmac_box *box = checkhmac(L, 1);
    const char *k = luaL_checkstring(L, 2);

    if (strcmp(k, "digest_size") == 0)
        lua_pushinteger(L, box->digest_size);
    else if (strcmp(k, "block_size") == 0)
        lua_pushinteger(L, box->block_size);
    else if (strcmp(k, "name") == 0)
        lua_pushfstring(L, "hmac-%s", box->name);
    else
        lua_rawget(L, lua_upvalueindex(1));
    return 1;
}

/* ---- module functions ------------------------------------------------ */

/* compare_digest(a, b) -> bool. Time depends on the lengths only, never
 * on where the bytes differ, so a MAC check leaks nothing useful. */
static int hashlib_compare_digest(lua_State *L)
{
    size_t la, lb;
    const char *a = luaL_checklstring(L, 1, &la);
    const char *b = luaL_checklstring(L, 2, &lb);
    int same;
    if (la == lb)
        same = CRYPTO_memcmp(a, b, la) == 0;
    else
        same = CRYPTO_memcmp(a, a, la) != 0;   /* same work, then false */
    lua_pushboolean(L, same);
    return 1;
}

/* urandom(n) -> n bytes from the CSPRNG | nil, message       [-0, +1|2] */
static int hashlib_urandom(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 1);
    luaL_Buffer b;
    unsigned char *p;

    luaL_argcheck(L, n >= 0 && n <= (1 << 24), 1, "size out of range");
    p = (unsigned char *)luaL_buffinitsize(L, &b, (size_t)n);
    if (n > 0 && RAND_bytes(p, (int)n) != 1)
        return pushfail(L, "random generator failed");
    luaL_pushresultsize(&b, (size_t)n);
    return 1;
}

/* supported(name) -> bool: whether new(name) would succeed. */
static int hashlib_supported(lua_State *L)
{
    char pyname[NAMELEN];
    EVP_MD *md = fetch_md(luaL_checkstring(L, 1), pyname);
    lua_pushboolean(L, md != NULL);
    EVP_MD_free(md);
    return 1;
}

static void newclass(lua_State *L, const char *mt, const luaL_Reg *meta,
                     const luaL_Reg *methods, lua_CFunction index)
{
    luaL_newmetatable(L, mt);
    luaL_setfuncs(L, meta, 0);
    lua_newtable(L);             /* methods: __index's upvalue */
    luaL_setfuncs(L, methods, 0);
    lua_pushcclosure(L, index, 1);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
}

int luaopen__moonsock_hashlib(lua_State *L)
{
    static const luaL_Reg hash_meta[] = {
        {"__gc", hash_close}, {"__close", hash_close},
        {"__tostring", hash__tostring}, {NULL, NULL}
    };
    static const luaL_Reg hash_methods[] = {
        {"update", hash_update}, {"digest", hash_digest},
        {"hexdigest", hash_hexdigest}, {"copy", hash_copy},
        {NULL, NULL}
    };
    static const luaL_Reg hmac_meta[] = {
        {"__gc", hmac_close}, {"__close", hmac_close},
        {"__tostring", hmac__tostring}, {NULL, NULL}
    };
    static const luaL_Reg hmac_methods[] = {
        {"update", hmac_update}, {"digest", hmac_digest},
        {"hexdigest", hmac_hexdigest}, {"copy", hmac_copy},
        {NULL, NULL}
    };
    static const luaL_Reg funcs[] = {
        {"new", hash_new}, {"hmac_new", hmac_new},
        {"compare_digest", hashlib_compare_digest},
        {"urandom", hashlib_urandom}, {"supported", hashlib_supported},
        {NULL, NULL}
    };

    newclass(L, HASH_MT, hash_meta, hash_methods, hash__index);
    newclass(L, HMAC_MT, hmac_meta, hmac_methods, hmac__index);
    luaL_newlib(L, funcs);
    return 1;
}
