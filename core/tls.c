/* tls.c: TLS with OpenSSL over memory BIOs, so the bytes move on the caller's libuv stream
 * (see tls.h): rbio holds what came from the network, wbio what must go to it. An SlTls owns
 * its SSL (which holds a reference on its SSL_CTX) and a plaintext buffer. OpenSSL's error
 * queue is per thread and libcurl shares it, so every entry point clears it first. A client
 * certificate and key come as PEM text, read from memory BIOs onto the one SSL (the cached
 * contexts hold CAs only), and no message names their content. A server with client_ca asks
 * for a client certificate and records whether it verified (the handshake goes on either way:
 * the Kubernetes API server answers an unverified one with 401, not with an alert). */
#include <arpa/inet.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "tls.h"

#define PLAIN_MIN 16384                    /* room kept for one more record's plaintext */
#define CTX_CACHE 8                        /* client contexts kept per host */

struct SlTls {
  SSL *ssl;
  BIO *rbio, *wbio;                        /* owned by ssl */
  char *plain;
  size_t plain_cap;
  bool server, done, failed;
  char peer[256];                          /* the name verified, for messages */
  char reason[128];                        /* why it failed (sl_tls_reason) */
};

struct SlTlsCtx {
  SSL_CTX *ctx;
};

/* The host's client contexts, newest last, by "insecure|ca_file|ca_path" (the data of the
 * teardown hook). A context in use by a connection outlives its eviction (refcounted). */
typedef struct {
  SSL_CTX *ctx[CTX_CACHE];
  char *key[CTX_CACHE];
  int n;
} CtxCache;

static void cache_drop(CtxCache *c, int i) {
  SSL_CTX_free(c->ctx[i]);
  free(c->key[i]);
  memmove(c->ctx + i, c->ctx + i + 1, sizeof(c->ctx[0]) * (size_t)(c->n - i - 1));
  memmove(c->key + i, c->key + i + 1, sizeof(c->key[0]) * (size_t)(c->n - i - 1));
  c->n--;
}

static void tls_teardown(SlHost *h, void *data, int phase) {
  (void)h;
  CtxCache *c = data;
  if (phase != SL_TEARDOWN_FREE) return;
  while (c->n > 0) cache_drop(c, c->n - 1);
  free(c);
}

/* the last OpenSSL reason queued, or fallback */
static const char *ssl_reason(const char *fallback) {
  unsigned long e = ERR_peek_last_error();
  const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;
  return r != NULL ? r : fallback;
}

static SlTls *tls_new(SSL_CTX *ctx, bool server, SlError *err) {
  SlTls *t = calloc(1, sizeof(*t));
  if (t == NULL) {
    sl_err_set(err, "internal", "out of memory");
    return NULL;
  }
  t->server = server;
  t->ssl = SSL_new(ctx);
  t->rbio = BIO_new(BIO_s_mem());
  t->wbio = BIO_new(BIO_s_mem());
  if (t->ssl == NULL || t->rbio == NULL || t->wbio == NULL) {
    BIO_free(t->rbio);
    BIO_free(t->wbio);
    SSL_free(t->ssl);
    free(t);
    sl_err_set(err, "internal", "TLS: %s", ssl_reason("out of memory"));
    return NULL;
  }
  SSL_set_bio(t->ssl, t->rbio, t->wbio);   /* an empty rbio means "retry", not EOF */
  if (server) SSL_set_accept_state(t->ssl);
  else SSL_set_connect_state(t->ssl);
  return t;
}

static bool is_ip(const char *host) {
  unsigned char buf[16];
  return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

/* A new client context: the CA certificates loaded, verification on unless insecure. */
static SSL_CTX *client_ctx(const char *ca_file, const char *ca_path, bool insecure,
                           SlError *err) {
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == NULL) {
    sl_err_set(err, "internal", "TLS: %s", ssl_reason("cannot create a context"));
    return NULL;
  }
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  if (!insecure) {
    int ok = ca_file != NULL || ca_path != NULL
                 ? SSL_CTX_load_verify_locations(ctx, ca_file, ca_path)
                 : SSL_CTX_set_default_verify_paths(ctx);
    if (ok != 1) {
      sl_err_set(err, "invalid_input", "TLS: cannot load the CA certificates %s: %s",
                 ca_file != NULL ? ca_file : ca_path != NULL ? ca_path : "(system store)",
                 ssl_reason("unknown error"));
      SSL_CTX_free(ctx);
      ERR_clear_error();
      return NULL;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
  }
  static const unsigned char alpn[] = "\x08http/1.1";
  SSL_CTX_set_alpn_protos(ctx, alpn, sizeof(alpn) - 1);
  return ctx;
}

/* The host's context for these options, loaded on first use (NULL: err says why). */
static SSL_CTX *cached_ctx(SlHost *h, const char *ca_file, const char *ca_path, bool insecure,
                           SlError *err) {
  CtxCache *c = sl_host_hook_data(h, tls_teardown);
  if (c == NULL) {
    if ((c = calloc(1, sizeof(*c))) == NULL || !sl_host_on_close(h, tls_teardown, c)) {
      free(c);
      sl_err_set(err, "internal", "out of memory");
      return NULL;
    }
  }
  char key[PATH_MAX * 2 + 8];
  snprintf(key, sizeof(key), "%d|%s%s|%s%s", insecure, ca_file != NULL ? "+" : "-",
           ca_file != NULL ? ca_file : "", ca_path != NULL ? "+" : "-",
           ca_path != NULL ? ca_path : "");
  for (int i = 0; i < c->n; i++)
    if (strcmp(c->key[i], key) == 0) return c->ctx[i];
  SSL_CTX *ctx = client_ctx(ca_file, ca_path, insecure, err);
  if (ctx == NULL) return NULL;
  char *k = strdup(key);
  if (k == NULL) {
    SSL_CTX_free(ctx);
    sl_err_set(err, "internal", "out of memory");
    return NULL;
  }
  if (c->n == CTX_CACHE) cache_drop(c, 0);
  c->ctx[c->n] = ctx;
  c->key[c->n++] = k;
  return ctx;
}

/* Reads a certificate (the first of cert: the rest stay in *rest, a BIO to read the chain
 * from) and its private key (unencrypted), both PEM text, and checks that they belong
 * together. NULL: both read (the caller frees *x, *k, *rest); else what was wrong. */
static const char *read_pair(const char *cert, size_t cert_len, const char *key, size_t key_len,
                             X509 **x, EVP_PKEY **k, BIO **rest) {
  *x = NULL;
  *k = NULL;
  *rest = NULL;
  if (cert_len > INT_MAX || key_len > INT_MAX) return "the client certificate";
  if ((*rest = BIO_new_mem_buf(cert, (int)cert_len)) == NULL ||
      (*x = PEM_read_bio_X509(*rest, NULL, NULL, NULL)) == NULL)
    return "the client certificate";
  BIO *b = BIO_new_mem_buf(key, (int)key_len);
  *k = b != NULL ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;   /* no passphrase */
  BIO_free(b);
  if (*k == NULL) return "the client key";
  if (X509_check_private_key(*x, *k) != 1)
    return "the client key (it does not match the client certificate)";
  return NULL;
}

static bool pair_failed(const char *what, SlError *err) {
  sl_err_set(err, "invalid_input", "TLS: cannot use %s: %s", what, ssl_reason("not PEM"));
  ERR_clear_error();
  return false;
}

bool sl_tls_check_pair(const char *cert, size_t cert_len, const char *key, size_t key_len,
                       SlError *err) {
  ERR_clear_error();
  X509 *x;
  EVP_PKEY *k;
  BIO *rest;
  const char *what = read_pair(cert, cert_len, key, key_len, &x, &k, &rest);
  BIO_free(rest);
  X509_free(x);
  EVP_PKEY_free(k);
  return what == NULL || pair_failed(what, err);
}

/* Sets the client certificate, any chain after it and its key (PEM text) on t's SSL. false:
 * err says why, in OpenSSL's words (they never quote the input). */
static bool use_client_cert(SlTls *t, const SlTlsClientOpts *o, SlError *err) {
  X509 *x, *more;
  EVP_PKEY *k;
  BIO *rest;
  const char *what = read_pair(o->cert, o->cert_len, o->key, o->key_len, &x, &k, &rest);
  if (what == NULL && (SSL_use_certificate(t->ssl, x) != 1 || SSL_use_PrivateKey(t->ssl, k) != 1
                       || SSL_check_private_key(t->ssl) != 1))
    what = "the client certificate and key";
  while (what == NULL && (more = PEM_read_bio_X509(rest, NULL, NULL, NULL)) != NULL) {
    if (SSL_add0_chain_cert(t->ssl, more) != 1) {   /* takes more on success */
      X509_free(more);
      what = "the client certificate's chain";
    }
  }
  BIO_free(rest);
  X509_free(x);
  EVP_PKEY_free(k);
  if (what != NULL) return pair_failed(what, err);
  ERR_clear_error();                       /* the end of the chain read as an error */
  return true;
}

SlTls *sl_tls_client(SlHost *h, const char *host, const SlTlsClientOpts *o, SlError *err) {
  ERR_clear_error();
  bool insecure = o->insecure;
  SSL_CTX *ctx = cached_ctx(h, o->ca_file, o->ca_path, insecure, err);
  if (ctx == NULL) return NULL;
  SlTls *t = tls_new(ctx, false, err);     /* the SSL holds its own reference on ctx */
  if (t == NULL) return NULL;
  snprintf(t->peer, sizeof(t->peer), "%s", host);
  if (o->cert != NULL && !use_client_cert(t, o, err)) {
    sl_tls_free(t);
    return NULL;
  }
  bool ip = is_ip(host);
  bool ok = ip || SSL_set_tlsext_host_name(t->ssl, host) == 1;   /* no SNI for an address */
  if (ok && !insecure) {
    X509_VERIFY_PARAM *p = SSL_get0_param(t->ssl);
    X509_VERIFY_PARAM_set_hostflags(p, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    ok = (ip ? X509_VERIFY_PARAM_set1_ip_asc(p, host) : X509_VERIFY_PARAM_set1_host(p, host, 0))
         == 1;
  }
  int rc = ok ? SSL_do_handshake(t->ssl) : 0;            /* queues the ClientHello */
  if (!ok || (rc != 1 && SSL_get_error(t->ssl, rc) != SSL_ERROR_WANT_READ)) {
    sl_err_set(err, "invalid_input", "TLS: cannot start a handshake with %s: %s", host,
               ssl_reason("bad host name"));
    sl_tls_free(t);
    ERR_clear_error();
    return NULL;
  }
  return t;
}

/* The server asks for a client certificate and keeps going whatever its verification says:
 * SSL_get_verify_result holds the verdict (sl_tls_client_cn). */
static int accept_any(int ok, X509_STORE_CTX *x) {
  (void)ok;
  (void)x;
  return 1;
}

/* Loads the client CAs (a file, or PEM text) into c: what verifies and what is advertised. */
static bool load_client_ca(SSL_CTX *ctx, const char *ca) {
  STACK_OF(X509_NAME) *names = sk_X509_NAME_new_null();
  X509_STORE *store = SSL_CTX_get_cert_store(ctx);
  bool text = strncmp(ca, "-----BEGIN", 10) == 0;
  BIO *b = text ? BIO_new_mem_buf(ca, -1) : BIO_new_file(ca, "r");
  int n = 0;
  X509 *x;
  while (b != NULL && names != NULL && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
    X509_NAME *nm = X509_NAME_dup(X509_get_subject_name(x));
    if (X509_STORE_add_cert(store, x) == 1 && nm != NULL && sk_X509_NAME_push(names, nm) > 0) n++;
    else X509_NAME_free(nm);
    X509_free(x);
  }
  BIO_free(b);
  if (n == 0) {
    sk_X509_NAME_pop_free(names, X509_NAME_free);
    return false;
  }
  ERR_clear_error();                       /* the end of the file read as an error */
  SSL_CTX_set_client_CA_list(ctx, names);  /* takes names */
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, accept_any);
  /* verifying peers, a server must name its sessions' context, or a client resuming one
   * (curl does, on each new connection) meets "session id context uninitialized" */
  static const unsigned char sid[] = "sandlot.http.serve";
  SSL_CTX_set_session_id_context(ctx, sid, sizeof(sid) - 1);
  return true;
}

SlTlsCtx *sl_tls_server_ctx(const char *cert, const char *key, const char *client_ca,
                            SlError *err) {
  ERR_clear_error();
  SlTlsCtx *c = calloc(1, sizeof(*c));
  if (c == NULL || (c->ctx = SSL_CTX_new(TLS_server_method())) == NULL) {
    free(c);
    sl_err_set(err, "internal", "TLS: %s", ssl_reason("cannot create a context"));
    return NULL;
  }
  const char *what = NULL;
  if (SSL_CTX_use_certificate_chain_file(c->ctx, cert) != 1) what = "the certificate";
  else if (SSL_CTX_use_PrivateKey_file(c->ctx, key, SSL_FILETYPE_PEM) != 1) what = "the key";
  else if (SSL_CTX_check_private_key(c->ctx) != 1) what = "the key (for this certificate)";
  if (what == NULL && client_ca != NULL && !load_client_ca(c->ctx, client_ca)) {
    sl_err_set(err, "invalid_input", "TLS: no CA certificate in the client_ca %s: %s",
               strncmp(client_ca, "-----BEGIN", 10) == 0 ? "text" : client_ca,
               ssl_reason("no certificate"));
    sl_tls_ctx_free(c);
    ERR_clear_error();
    return NULL;
  }
  if (what != NULL) {
    sl_err_set(err, "invalid_input", "TLS: cannot use %s (%s, %s): %s", what, cert, key,
               ssl_reason("unknown error"));
    sl_tls_ctx_free(c);
    ERR_clear_error();
    return NULL;
  }
  return c;
}

void sl_tls_ctx_free(SlTlsCtx *c) {
  if (c == NULL) return;
  SSL_CTX_free(c->ctx);
  free(c);
}

SlTls *sl_tls_server(SlTlsCtx *c, SlError *err) {
  ERR_clear_error();
  SlTls *t = tls_new(c->ctx, true, err);
  if (t != NULL) snprintf(t->peer, sizeof(t->peer), "the client");
  return t;
}

void sl_tls_free(SlTls *t) {
  if (t == NULL) return;
  SSL_free(t->ssl);                        /* and both BIOs */
  free(t->plain);
  free(t);
}

bool sl_tls_ready(const SlTls *t) { return t->done; }

int sl_tls_client_cn(const SlTls *t, char *cn, size_t n, const char **why) {
  *why = NULL;
  if (n > 0) cn[0] = '\0';
  X509 *peer = t->server && t->done ? SSL_get0_peer_certificate(t->ssl) : NULL;
  if (peer == NULL) return 0;
  long vr = SSL_get_verify_result(t->ssl);
  if (vr != X509_V_OK) {
    *why = X509_verify_cert_error_string(vr);
    return -1;
  }
  int len = X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn,
                                      n > INT_MAX ? INT_MAX : (int)n);
  if (len < 0 && n > 0) cn[0] = '\0';
  ERR_clear_error();
  return 1;
}

const char *sl_tls_reason(const SlTls *t) { return t->failed ? t->reason : NULL; }

/* The handshake (or a read) failed: a refused certificate says why, anything else names
 * OpenSSL's reason (a plain-http server answering a ClientHello: "wrong version number"). */
static int tls_fail(SlTls *t, int sslerr, SlError *err) {
  t->failed = true;
  long vr = t->server ? X509_V_OK : SSL_get_verify_result(t->ssl);
  bool refused = !t->done && vr != X509_V_OK;
  if (refused) snprintf(t->reason, sizeof(t->reason), "%s", X509_verify_cert_error_string(vr));
  else if (sslerr == SSL_ERROR_SSL)
    snprintf(t->reason, sizeof(t->reason), "%s", ssl_reason("protocol error"));
  else snprintf(t->reason, sizeof(t->reason), "OpenSSL error %d", sslerr);
  if (refused)
    sl_err_set(err, "auth_failed", "TLS: the certificate of %s was refused: %s", t->peer,
               t->reason);
  else
    sl_err_set(err, "bad_response", "TLS %s with %s failed: %s",
               t->done ? "stream" : "handshake", t->peer, t->reason);
  ERR_clear_error();
  return SL_TLS_FAIL;
}

int sl_tls_input(SlTls *t, const char *data, size_t n, const char **plain, size_t *plain_len,
                 SlError *err) {
  *plain = t->plain;
  *plain_len = 0;
  if (t->failed) {
    sl_err_set(err, "bad_response", "TLS with %s failed earlier", t->peer);
    return SL_TLS_FAIL;
  }
  ERR_clear_error();
  if (n > 0 && (n > INT_MAX || BIO_write(t->rbio, data, (int)n) != (int)n)) {
    t->failed = true;
    sl_err_set(err, "internal", "TLS: out of memory");
    return SL_TLS_FAIL;
  }
  if (!t->done) {
    int rc = SSL_do_handshake(t->ssl);
    if (rc != 1) {
      int e = SSL_get_error(t->ssl, rc);
      return e == SSL_ERROR_WANT_READ ? SL_TLS_OK : tls_fail(t, e, err);
    }
    t->done = true;
  }
  size_t len = 0;
  for (;;) {                               /* everything fed is decrypted now: none waits */
    if (t->plain_cap - len < PLAIN_MIN) {
      size_t cap = t->plain_cap < 4 * PLAIN_MIN ? 4 * PLAIN_MIN : t->plain_cap * 2;
      char *p = realloc(t->plain, cap);
      if (p == NULL) {
        t->failed = true;
        sl_err_set(err, "internal", "TLS: out of memory");
        return SL_TLS_FAIL;
      }
      t->plain = p;
      t->plain_cap = cap;
    }
    size_t room = t->plain_cap - len;
    int r = SSL_read(t->ssl, t->plain + len, room > INT_MAX ? INT_MAX : (int)room);
    if (r > 0) {
      len += (size_t)r;
      continue;
    }
    int e = SSL_get_error(t->ssl, r);
    *plain = t->plain;
    *plain_len = len;
    if (e == SSL_ERROR_WANT_READ) return SL_TLS_OK;
    if (e == SSL_ERROR_ZERO_RETURN) return SL_TLS_EOF;
    return tls_fail(t, e, err);
  }
}

bool sl_tls_output(SlTls *t, const char *data, size_t n, SlError *err) {
  ERR_clear_error();
  while (n > 0) {
    int k = n > (1u << 30) ? (1 << 30) : (int)n;
    int r = t->failed ? -1 : SSL_write(t->ssl, data, k);
    if (r <= 0) {
      sl_err_set(err, "io_error", "TLS: cannot send: %s", ssl_reason("the session failed"));
      ERR_clear_error();
      return false;
    }
    data += r;
    n -= (size_t)r;
  }
  return true;
}

void sl_tls_close_notify(SlTls *t) {
  ERR_clear_error();
  if (t->done && !t->failed) SSL_shutdown(t->ssl);
  ERR_clear_error();
}

size_t sl_tls_pending(SlTls *t) { return BIO_ctrl_pending(t->wbio); }

size_t sl_tls_take(SlTls *t, char *dst, size_t n) {
  int r = BIO_read(t->wbio, dst, n > INT_MAX ? INT_MAX : (int)n);
  return r > 0 ? (size_t)r : 0;
}
