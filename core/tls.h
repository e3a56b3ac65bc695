/* tls.h: TLS over a byte stream the caller drives (OpenSSL with memory BIOs), shared by the
 * upgraded client stream (http_upgrade.c) and the server for fakes (http_serve.c). The caller
 * feeds what it read from the socket (sl_tls_input), hands plaintext to encrypt
 * (sl_tls_output), and after either sends what sl_tls_pending says is waiting (sl_tls_take).
 * No sockets, no loop, no Lua here. */
#ifndef SANDLOT_TLS_H
#define SANDLOT_TLS_H

#include "internal.h"

typedef struct SlTls SlTls;
typedef struct SlTlsCtx SlTlsCtx;

enum { SL_TLS_OK, SL_TLS_EOF, SL_TLS_FAIL };

/* A client for host (SNI unless an IP literal; the certificate must name it). Verification
 * is against ca_file / ca_path when given, else the system store; insecure skips it (an
 * explicit opt-in only). The contexts (the loaded CA certificates: ~50 ms for the system
 * store) are kept per SlHost, CTX_CACHE of them. The ClientHello is pending on return. NULL:
 * err says why. */
typedef struct {
  const char *ca_file, *ca_path;
  bool insecure;
  /* PEM text in memory (both or neither): the client certificate (its chain may follow) and
   * its private key, set on this connection only (never on a cached context, never a file) */
  const char *cert, *key;
  size_t cert_len, key_len;
} SlTlsClientOpts;
SlTls *sl_tls_client(SlHost *h, const char *host, const SlTlsClientOpts *o, SlError *err);
/* A server's certificate chain and key (PEM files); shared by its connections. client_ca
 * (a PEM file, or PEM text when it starts with "-----BEGIN"; NULL: none) asks every client
 * for a certificate and verifies one given against those CAs, as Go's RequestClientCert with
 * an authenticator after it: the handshake goes on either way, sl_tls_client_cn tells. */
SlTlsCtx *sl_tls_server_ctx(const char *cert, const char *key, const char *client_ca,
                            SlError *err);
void sl_tls_ctx_free(SlTlsCtx *c);
/* Do cert (PEM text: a certificate first) and key (PEM text: its unencrypted private key)
 * belong together? false: err says why (invalid_input), never quoting either. For libcurl,
 * whose connection cache compares the certificate but not the key (see http_fetch.c). */
bool sl_tls_check_pair(const char *cert, size_t cert_len, const char *key, size_t key_len,
                       SlError *err);         /* connections made from it keep it alive */
SlTls *sl_tls_server(SlTlsCtx *c, SlError *err);
void sl_tls_free(SlTls *t);

bool sl_tls_ready(const SlTls *t);         /* the handshake is complete */
/* A server's view of its client's certificate, once ready: 1 and its subject's CN in cn (n
 * bytes) when it verified against client_ca; 0 when none was given; -1 when one was refused
 * (*why: OpenSSL's verify reason). */
int sl_tls_client_cn(const SlTls *t, char *cn, size_t n, const char **why);
/* why the session failed, in OpenSSL's words ("hostname mismatch", "wrong version number");
 * NULL while it has not */
const char *sl_tls_reason(const SlTls *t);
/* Feeds n bytes from the network and advances the handshake; *plain / *plain_len: what they
 * decrypted to (valid until the next call). SL_TLS_EOF: the peer's close_notify came (after
 * the plaintext returned with it); SL_TLS_FAIL: err says why (auth_failed for a certificate
 * that was refused, naming the reason; bad_response for anything else). */
int sl_tls_input(SlTls *t, const char *data, size_t n, const char **plain, size_t *plain_len,
                 SlError *err);
bool sl_tls_output(SlTls *t, const char *data, size_t n, SlError *err);   /* encrypts */
void sl_tls_close_notify(SlTls *t);
size_t sl_tls_pending(SlTls *t);            /* ciphertext bytes waiting to be sent */
size_t sl_tls_take(SlTls *t, char *dst, size_t n);

#endif
