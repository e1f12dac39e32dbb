/* cgen: the WebSocket load generator for tools/bench/run.py, in C so that it
 * is not the bottleneck (one thread, epoll, non-blocking sockets; libc, plus
 * OpenSSL for wss:// when built with -DCGEN_TLS -lssl -lcrypto).
 *
 *   cgen MODE --url ws://127.0.0.1:PORT/ws [--url ...] --tokens FILE [options]
 *
 * Speaks run.py's line protocol on stdout:
 *   MARK <name>       run.py samples server/generator CPU and RSS here
 *   MARKWAIT <name>   the same, then run.py writes one line on stdin to go on
 *   RESULT <json>     the scenario's figures; the process then exits
 * Diagnostics go to stderr.
 *
 * Modes:
 *   handshake  --concurrency C loops of: connect, upgrade with
 *              "Authorization: Bearer", read the 101 and the welcome, send a
 *              close frame, wait for the server's close frame and its TCP
 *              close (or 2 s), close; --duration s. Counts completed loops.
 *   fanout     --n subscribers of --channel (each subscribes and waits for
 *              its ack), then --pubs publishers on their own sockets.
 *                sat  each publisher keeps --inflight messages in flight: a
 *                     message is in flight until every subscriber has it
 *                     (counted per publisher from its own deliveries);
 *                     deliveries/s over --sat s
 *                lat  one message in flight in all (the publishers take
 *                     turns); the publish time is in the message, every
 *                     receiver records now - t; p50/p99 over all pairs; --lat s
 *   idle       open --n authenticated connections, MARKWAIT idle, close all.
 *
 * Subscribers go round-robin over the URLs listed by --sub-urls (indexes into
 * the --url list; default all), publishers over --pub-urls (default 0).
 * Client frames are masked (RFC 6455 §5.3). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#ifdef CGEN_TLS
#include <openssl/err.h>
#include <openssl/ssl.h>
#endif

/* -- small helpers ------------------------------------------------------- */

static uint64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void die(const char *fmt, ...) {
    va_list ap;
    char msg[512];
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "cgen: %s\n", msg);
    /* run.py reads the error from the RESULT line */
    printf("RESULT {\"error\":\"");
    for (const char *p = msg; *p; p++)
        if (*p == '"' || *p == '\\') printf("\\%c", *p);
        else if ((unsigned char)*p >= 0x20) putchar(*p);
    printf("\"}\n");
    fflush(stdout);
    exit(2);
}

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n);
    if (!q) die("out of memory");
    return q;
}

static uint64_t rng_state;
static uint32_t rng32(void) { /* xorshift64*: masks need not be secret here */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545F4914F6CDD1DULL) >> 32);
}

static void mark(const char *name) {
    printf("MARK %s\n", name);
    fflush(stdout);
}

static void mark_wait(const char *name) {
    char line[64];
    printf("MARKWAIT %s\n", name);
    fflush(stdout);
    if (!fgets(line, sizeof line, stdin)) die("stdin closed at MARKWAIT");
}

/* JSON string (quoted, escaped) into out */
static void json_str(FILE *out, const char *s) {
    if (!s) { fputs("null", out); return; }
    fputc('"', out);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') fprintf(out, "\\%c", ch);
        else if (ch < 0x20) fprintf(out, "\\u%04x", ch);
        else fputc(ch, out);
    }
    fputc('"', out);
}

static void json_num(FILE *out, double v, int have) {
    if (have) fprintf(out, "%.4f", v); else fputs("null", out);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double percentile(const double *sorted, size_t n, double p) {
    size_t idx;
    if (!n) return 0;
    idx = (size_t)((p / 100.0) * (double)n + 0.999999);
    if (idx > 0) idx--;
    if (idx >= n) idx = n - 1;
    return sorted[idx];
}

/* -- configuration ------------------------------------------------------- */

#define MAX_URLS 8
typedef struct {
    char host[256];
    char port[16];
    char path[512];
    char hostport[300];
    int tls;
    struct sockaddr_storage addr;
    socklen_t addrlen;
} url_t;

static url_t urls[MAX_URLS];
static int nurls;
static int sub_urls[MAX_URLS], nsub_urls, pub_urls[MAX_URLS], npub_urls;
static char **tokens;
static int ntokens;
static const char *mode = "";
static const char *channel = "chat:bench";
static int opt_n = 100, opt_pubs = 1, opt_inflight = 1, opt_pad = 4, opt_concurrency = 50;
static int opt_connect_concurrency = 100, opt_settle_ms = 0;
static double opt_sat = 5, opt_lat = 5, opt_duration = 5;

static void parse_url(const char *text, url_t *u) {
    const char *p = text, *slash, *colon;
    memset(u, 0, sizeof *u);
    if (!strncmp(p, "ws://", 5)) p += 5;
    else if (!strncmp(p, "wss://", 6)) { p += 6; u->tls = 1; }
    else die("bad url %s (ws:// or wss://)", text);
    slash = strchr(p, '/');
    if (!slash) slash = p + strlen(p);
    snprintf(u->path, sizeof u->path, "%s", *slash ? slash : "/");
    snprintf(u->hostport, sizeof u->hostport, "%.*s", (int)(slash - p), p);
    colon = memrchr(p, ':', (size_t)(slash - p));
    if (!colon) die("url %s needs a port", text);
    snprintf(u->host, sizeof u->host, "%.*s", (int)(colon - p), p);
    snprintf(u->port, sizeof u->port, "%.*s", (int)(slash - colon - 1), colon + 1);
    if (u->host[0] == '[') { /* [::1] */
        memmove(u->host, u->host + 1, strlen(u->host));
        u->host[strlen(u->host) - 1] = 0;
    }
    {
        struct addrinfo hints = {0}, *res;
        hints.ai_socktype = SOCK_STREAM;
        if (getaddrinfo(u->host, u->port, &hints, &res) != 0 || !res) die("cannot resolve %s", text);
        memcpy(&u->addr, res->ai_addr, res->ai_addrlen);
        u->addrlen = res->ai_addrlen;
        freeaddrinfo(res);
    }
#ifndef CGEN_TLS
    if (u->tls) die("built without TLS (no OpenSSL headers): %s", text);
#endif
}

static void parse_list(const char *text, int *out, int *count) {
    char buf[128], *save = NULL, *tok;
    snprintf(buf, sizeof buf, "%s", text);
    *count = 0;
    for (tok = strtok_r(buf, ",", &save); tok && *count < MAX_URLS; tok = strtok_r(NULL, ",", &save))
        out[(*count)++] = atoi(tok);
}

static void read_tokens(const char *path) {
    FILE *f = fopen(path, "r");
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    if (!f) die("cannot read tokens file %s", path);
    while ((len = getline(&line, &cap, f)) > 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (!len) continue;
        tokens = xrealloc(tokens, sizeof *tokens * (size_t)(ntokens + 1));
        tokens[ntokens++] = strdup(line);
    }
    free(line);
    fclose(f);
    if (!ntokens) die("no tokens in %s", path);
}

/* -- connections --------------------------------------------------------- */

enum { ST_CONNECTING, ST_TLS, ST_UPGRADE, ST_WELCOME, ST_SUBACK, ST_READY, ST_CLOSING, ST_WAITEOF, ST_DEAD };
enum { K_SUB, K_PUB, K_HS, K_IDLE };

typedef struct conn {
    int fd;
    int st, kind, idx, url, tries, token;
    int close_code;
    int epout; /* EPOLLOUT registered */
    unsigned gen; /* bumped by every close: a reopened socket drops the old bytes */
    uint64_t t0, deadline;
#ifdef CGEN_TLS
    SSL *ssl;
#endif
    unsigned char *in;
    size_t inlen, incap;
    unsigned char *out;
    size_t outoff, outlen, outcap;
} conn_t;

static int ep;
static unsigned char rbuf[1 << 18];
#ifdef CGEN_TLS
static SSL_CTX *ssl_ctx;
#endif

/* scenario counters */
static const char *first_error;
static char first_error_buf[300];
static long errors, ready_count, setup_failed;

static void note_error(const char *fmt, ...) {
    va_list ap;
    errors++;
    if (first_error) return;
    va_start(ap, fmt);
    vsnprintf(first_error_buf, sizeof first_error_buf, fmt, ap);
    va_end(ap);
    first_error = first_error_buf;
}

static void ep_update(conn_t *c) {
    struct epoll_event ev = {0};
    int want = c->st == ST_CONNECTING || c->outlen > 0;
    if (want == c->epout) return;
    ev.events = EPOLLIN | (want ? EPOLLOUT : 0);
    ev.data.ptr = c;
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->epout = want;
}

static void conn_close(conn_t *c) {
    if (c->fd >= 0) {
#ifdef CGEN_TLS
        if (c->ssl) { SSL_free(c->ssl); c->ssl = NULL; }
#endif
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
    c->gen++;
    c->st = ST_DEAD;
    c->inlen = c->outlen = c->outoff = 0;
}

static void conn_open(conn_t *c) {
    url_t *u = &urls[c->url];
    struct epoll_event ev = {0};
    int one = 1;
    c->fd = socket(u->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) die("socket: %s", strerror(errno));
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->st = ST_CONNECTING;
    c->inlen = c->outlen = c->outoff = 0;
    c->close_code = 0;
    c->t0 = now_us();
    c->deadline = c->t0 + 20000000u;
    if (connect(c->fd, (struct sockaddr *)&u->addr, u->addrlen) < 0 && errno != EINPROGRESS) {
        note_error("connect: %s", strerror(errno));
    }
    ev.events = EPOLLIN | EPOLLOUT;
    ev.data.ptr = c;
    c->epout = 1;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl: %s", strerror(errno));
}

static int io_write(conn_t *c, const unsigned char *p, size_t n) {
#ifdef CGEN_TLS
    if (c->ssl) {
        int r = SSL_write(c->ssl, p, (int)n);
        if (r > 0) return r;
        r = SSL_get_error(c->ssl, r);
        if (r == SSL_ERROR_WANT_WRITE || r == SSL_ERROR_WANT_READ) { errno = EAGAIN; return -1; }
        errno = EPIPE;
        return -1;
    }
#endif
    return (int)send(c->fd, p, n, MSG_NOSIGNAL);
}

/* 0 ok (maybe still buffered), -1 connection broken */
static int flush_out(conn_t *c) {
    while (c->outlen > c->outoff) {
        int r = io_write(c, c->out + c->outoff, c->outlen - c->outoff);
        if (r < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) break;
            return -1;
        }
        c->outoff += (size_t)r;
    }
    if (c->outoff == c->outlen) c->outoff = c->outlen = 0;
    ep_update(c);
    return 0;
}

static void out_append(conn_t *c, const void *p, size_t n) {
    if (c->outlen + n > c->outcap) {
        c->outcap = (c->outlen + n) * 2 + 256;
        c->out = xrealloc(c->out, c->outcap);
    }
    memcpy(c->out + c->outlen, p, n);
    c->outlen += n;
}

static void ws_send(conn_t *c, int opcode, const char *payload, size_t len) {
    unsigned char hdr[14];
    size_t h = 2, i, start;
    uint32_t m = rng32();
    unsigned char mask[4] = {(unsigned char)m, (unsigned char)(m >> 8), (unsigned char)(m >> 16),
                             (unsigned char)(m >> 24)};
    hdr[0] = (unsigned char)(0x80 | opcode);
    if (len < 126) hdr[1] = (unsigned char)(0x80 | len);
    else if (len < 65536) { hdr[1] = 0x80 | 126; hdr[2] = (unsigned char)(len >> 8); hdr[3] = (unsigned char)len; h = 4; }
    else {
        hdr[1] = 0x80 | 127;
        for (i = 0; i < 8; i++) hdr[2 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
        h = 10;
    }
    memcpy(hdr + h, mask, 4);
    out_append(c, hdr, h + 4);
    start = c->outlen;
    out_append(c, payload, len);
    for (i = 0; i < len; i++) c->out[start + i] ^= mask[i & 3];
    if (flush_out(c) < 0) { /* reported by the reader on EOF/error */ }
}

static void ws_send_text(conn_t *c, const char *text) { ws_send(c, 1, text, strlen(text)); }

static void ws_send_close(conn_t *c, int code) {
    char body[2] = {(char)(code >> 8), (char)code};
    ws_send(c, 8, body, 2);
}

static void send_upgrade(conn_t *c) {
    url_t *u = &urls[c->url];
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    unsigned char raw[18];
    char key[25], req[4096];
    int i, n;
    for (i = 0; i < 16; i++) raw[i] = (unsigned char)rng32();
    raw[16] = raw[17] = 0;
    for (i = 0; i < 6; i++) {
        uint32_t v = (uint32_t)raw[3 * i] << 16 | (uint32_t)raw[3 * i + 1] << 8 | raw[3 * i + 2];
        key[4 * i] = b64[v >> 18 & 63];
        key[4 * i + 1] = b64[v >> 12 & 63];
        key[4 * i + 2] = b64[v >> 6 & 63];
        key[4 * i + 3] = b64[v & 63];
    }
    key[22] = key[23] = '=';
    key[24] = 0;
    n = snprintf(req, sizeof req,
                 "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer %s\r\n\r\n",
                 u->path, u->hostport, key, tokens[c->token % ntokens]);
    out_append(c, req, (size_t)n);
    c->st = ST_UPGRADE;
    flush_out(c);
}

/* -- the scenario hooks -------------------------------------------------- */

static conn_t *conns; /* subscribers / handshake loops / idle sockets */
static int nconns;
static conn_t *pubs;

/* fan-out state */
enum { PH_SETUP, PH_SAT, PH_DRAIN, PH_LAT, PH_DONE };
static int phase = PH_SETUP;
static long long delivered, bytes_in;
static long long *published, *completed; /* per publisher */
static int *slot_count;                    /* [pub * inflight + seq % inflight] */
static int sat_running;
static uint64_t *progress_at; /* per publisher: when a message of it last completed (or was sent) */
static long stuck_messages;  /* given up after STUCK_US without completing (lost or very late) */
#define STUCK_US 2000000u
static double *lat_samples;
static size_t nlat, lat_cap;
static long lat_got; /* deliveries of the message in flight (lat) */
static long publisher_errors, subscriber_closes;
static char publisher_last_error[256];
static int close_codes[16], close_code_n[16], nclose_codes;
static char pad_text[4096];

static void publish(int p) {
    char msg[4608];
    long long seq = published[p]++;
    if (phase == PH_SAT) slot_count[p * opt_inflight + (int)(seq % opt_inflight)] = 0;
    snprintf(msg, sizeof msg, "{\"type\":\"publish\",\"channel\":\"%s\",\"data\":{\"t\":%llu,\"i\":%d,\"s\":%lld,\"p\":\"%s\"}}",
             channel, (unsigned long long)now_us(), p, seq, pad_text);
    ws_send_text(&pubs[p], msg);
}

static void top_up(int p) {
    while (sat_running && published[p] - completed[p] < opt_inflight) publish(p);
}

/* a publisher whose messages have not all arrived for STUCK_US gives up on
 * them and goes on, so one lost message does not stall it for the window */
static void sat_watchdog(uint64_t t) {
    int p;
    if (!sat_running) return;
    for (p = 0; p < opt_pubs; p++) {
        if (published[p] > completed[p] && t - progress_at[p] > STUCK_US) {
            stuck_messages += published[p] - completed[p];
            completed[p] = published[p];
            progress_at[p] = t;
            top_up(p);
        }
    }
}

static const unsigned char *find_key(const unsigned char *data, size_t len, const char *key) {
    const unsigned char *at = memmem(data, len, key, strlen(key));
    if (!at) return NULL;
    at += strlen(key);
    while (at < data + len && *at == ' ') at++;
    return at;
}

static void on_delivery(const unsigned char *data, size_t len) {
    const unsigned char *tp, *pp, *sp;
    delivered++;
    bytes_in += (long long)len;
    if (phase == PH_LAT) {
        tp = find_key(data, len, "\"t\":");
        if (tp) {
            double lat_ms = ((double)now_us() - strtod((const char *)tp, NULL)) / 1000.0;
            if (nlat == lat_cap) {
                lat_cap = lat_cap ? lat_cap * 2 : 1 << 16;
                lat_samples = xrealloc(lat_samples, lat_cap * sizeof *lat_samples);
            }
            lat_samples[nlat++] = lat_ms;
        }
        lat_got++;
        return;
    }
    if (phase != PH_SAT && phase != PH_DRAIN) return;
    pp = find_key(data, len, "\"i\":");
    sp = find_key(data, len, "\"s\":");
    if (pp && sp) {
        int p = atoi((const char *)pp);
        long long s = atoll((const char *)sp);
        if (p >= 0 && p < opt_pubs && s < published[p] && s >= published[p] - opt_inflight) {
            int *slot = &slot_count[p * opt_inflight + (int)(s % opt_inflight)];
            if (++*slot == opt_n && completed[p] < published[p]) {
                completed[p]++;
                progress_at[p] = now_us();
                top_up(p);
            }
        }
    }
}

static void hs_start(conn_t *c);
static uint64_t hs_end_at;
static long hs_ok;
static double *hs_lat;
static size_t hs_nlat, hs_lat_cap;

static void on_ready(conn_t *c) {
    char msg[512];
    switch (c->kind) {
    case K_SUB:
        snprintf(msg, sizeof msg, "{\"type\":\"subscribe\",\"channel\":\"%s\",\"id\":%d}", channel, c->idx + 1);
        c->st = ST_SUBACK;
        ws_send_text(c, msg);
        break;
    case K_HS:
        c->st = ST_CLOSING;
        ws_send_close(c, 1000);
        break;
    default:
        c->st = ST_READY;
        ready_count++;
    }
}

static void on_text(conn_t *c, const unsigned char *data, size_t len) {
    if (c->st == ST_WELCOME) {
        if (len < 17 || memcmp(data, "{\"type\":\"welcome\"", 17) != 0) {
            if (!memmem(data, len, "\"welcome\"", 9)) {
                note_error("expected welcome, got %.*s", (int)(len > 200 ? 200 : len), data);
                conn_close(c);
                return;
            }
        }
        on_ready(c);
        return;
    }
    if (c->st == ST_SUBACK) {
        if (!memmem(data, len, "\"ack\"", 5)) {
            note_error("expected ack, got %.*s", (int)(len > 200 ? 200 : len), data);
            conn_close(c);
            return;
        }
        c->st = ST_READY;
        ready_count++;
        return;
    }
    if (c->st != ST_READY) return;
    if (c->kind == K_SUB) on_delivery(data, len);
    else if (c->kind == K_PUB) {
        publisher_errors++;
        snprintf(publisher_last_error, sizeof publisher_last_error, "%.*s", (int)(len > 200 ? 200 : len), data);
    }
}

static void on_close_code(int code) {
    int i;
    for (i = 0; i < nclose_codes; i++)
        if (close_codes[i] == code) { close_code_n[i]++; return; }
    if (nclose_codes < 16) { close_codes[nclose_codes] = code; close_code_n[nclose_codes++] = 1; }
}

/* the connection ended (EOF, error, or the close exchange done) */
static void on_end(conn_t *c, const char *why) {
    int was = c->st;
    conn_close(c);
    if (c->kind == K_HS) {
        if (was == ST_WAITEOF) {
            uint64_t t = now_us();
            if (t <= hs_end_at) {
                hs_ok++;
                if (hs_nlat == hs_lat_cap) {
                    hs_lat_cap = hs_lat_cap ? hs_lat_cap * 2 : 4096;
                    hs_lat = xrealloc(hs_lat, hs_lat_cap * sizeof *hs_lat);
                }
                hs_lat[hs_nlat++] = (double)(t - c->t0) / 1000.0;
            }
        } else {
            note_error("handshake: %s", why);
        }
        if (now_us() < hs_end_at) hs_start(c);
        return;
    }
    if (was >= ST_READY) {
        if (c->kind == K_SUB) { subscriber_closes++; on_close_code(c->close_code ? c->close_code : 1006); }
        if (was == ST_READY) ready_count--;
        return;
    }
    /* during setup: retry a few times, as the other generators do */
    if (++c->tries < 5) {
        conn_open(c);
    } else {
        note_error("%s", why);
        setup_failed++;
    }
}

/* parse frames from data; returns bytes consumed */
static size_t on_frames(conn_t *c, const unsigned char *data, size_t len) {
    size_t off = 0;
    unsigned gen = c->gen;
    while (len - off >= 2 && c->fd >= 0 && c->gen == gen) {
        const unsigned char *f = data + off;
        int opcode = f[0] & 0x0f, masked = f[1] & 0x80;
        uint64_t plen = f[1] & 0x7f;
        size_t h = 2, i;
        if (plen == 126) {
            if (len - off < 4) break;
            plen = (uint64_t)f[2] << 8 | f[3];
            h = 4;
        } else if (plen == 127) {
            if (len - off < 10) break;
            plen = 0;
            for (i = 0; i < 8; i++) plen = plen << 8 | f[2 + i];
            h = 10;
        }
        if (masked) h += 4; /* a server must not mask; tolerate it */
        if (len - off < h + plen) break;
        {
            unsigned char *payload = (unsigned char *)f + h;
            if (masked)
                for (i = 0; i < plen; i++) payload[i] ^= f[h - 4 + (i & 3)];
            off += h + (size_t)plen;
            if (opcode == 8) {
                c->close_code = plen >= 2 ? payload[0] << 8 | payload[1] : 1005;
                if (c->st == ST_CLOSING) {
                    /* our close answered: the server closes TCP next (RFC 6455 §7.1.1) */
                    c->st = ST_WAITEOF;
                    c->deadline = now_us() + 2000000u;
                } else {
                    char why[64];
                    ws_send_close(c, c->close_code == 1005 ? 1000 : c->close_code);
                    snprintf(why, sizeof why, "the server closed with %d", c->close_code);
                    on_end(c, why);
                    return off;
                }
            } else if (opcode == 9) {
                ws_send(c, 10, (const char *)payload, (size_t)plen);
            } else if (opcode == 1 || opcode == 2) {
                on_text(c, payload, (size_t)plen);
            }
        }
    }
    return off;
}

/* bytes arrived on c: the HTTP response, then frames */
static void on_bytes(conn_t *c, const unsigned char *data, size_t len) {
    size_t used;
    unsigned gen = c->gen;
    if (c->inlen || c->st == ST_UPGRADE) {
        if (c->inlen + len > c->incap) {
            c->incap = (c->inlen + len) * 2;
            c->in = xrealloc(c->in, c->incap);
        }
        memcpy(c->in + c->inlen, data, len);
        c->inlen += len;
        data = c->in;
        len = c->inlen;
    }
    if (c->st == ST_UPGRADE) {
        const unsigned char *end = memmem(data, len, "\r\n\r\n", 4);
        size_t head;
        if (!end) {
            if (len > 16384) { on_end(c, "response head too long"); }
            return;
        }
        head = (size_t)(end - data) + 4;
        if (len < 13 || memcmp(data, "HTTP/1.1 101", 12) != 0) {
            char why[120];
            const unsigned char *eol = memmem(data, len, "\r\n", 2);
            snprintf(why, sizeof why, "%.*s", (int)(eol - data > 100 ? 100 : eol - data), data);
            c->tries = 99; /* an HTTP refusal is not retried */
            on_end(c, why);
            return;
        }
        c->st = ST_WELCOME;
        memmove(c->in, data + head, len - head);
        c->inlen = len - head;
        data = c->in;
        len = c->inlen;
    }
    used = on_frames(c, (unsigned char *)data, len);
    if (c->fd < 0 || c->gen != gen) return;
    if (data == c->in) {
        memmove(c->in, c->in + used, len - used);
        c->inlen = len - used;
    } else if (used < len) {
        if (len - used > c->incap) {
            c->incap = (len - used) * 2;
            c->in = xrealloc(c->in, c->incap);
        }
        memcpy(c->in, data + used, len - used);
        c->inlen = len - used;
    }
}

static void on_event(conn_t *c, uint32_t events) {
    unsigned gen;
    if (c->fd < 0) return;
    if (c->st == ST_CONNECTING) {
        int err = 0;
        socklen_t l = sizeof err;
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
        if (err) { on_end(c, strerror(err)); return; }
#ifdef CGEN_TLS
        if (urls[c->url].tls) {
            c->ssl = SSL_new(ssl_ctx);
            SSL_set_fd(c->ssl, c->fd);
            SSL_set_tlsext_host_name(c->ssl, "localhost");
            SSL_set_connect_state(c->ssl);
            c->st = ST_TLS;
        } else
#endif
        {
            send_upgrade(c);
            return;
        }
    }
#ifdef CGEN_TLS
    if (c->st == ST_TLS) {
        int r = SSL_do_handshake(c->ssl);
        if (r == 1) { send_upgrade(c); return; }
        r = SSL_get_error(c->ssl, r);
        if (r == SSL_ERROR_WANT_READ || r == SSL_ERROR_WANT_WRITE) {
            struct epoll_event ev = {0};
            ev.events = EPOLLIN | (r == SSL_ERROR_WANT_WRITE ? EPOLLOUT : 0);
            ev.data.ptr = c;
            epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
            c->epout = r == SSL_ERROR_WANT_WRITE;
            return;
        }
        on_end(c, "TLS handshake failed");
        return;
    }
#endif
    if (c->outlen && flush_out(c) < 0) { on_end(c, "write failed"); return; }
    if (!(events & (EPOLLIN | EPOLLERR | EPOLLHUP))) return;
    gen = c->gen;
    for (;;) {
        ssize_t r;
#ifdef CGEN_TLS
        if (c->ssl) {
            r = SSL_read(c->ssl, rbuf, sizeof rbuf);
            if (r <= 0) {
                int e = SSL_get_error(c->ssl, (int)r);
                if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return;
                on_end(c, e == SSL_ERROR_ZERO_RETURN ? "closed" : "TLS read failed");
                return;
            }
        } else
#endif
        {
            r = recv(c->fd, rbuf, sizeof rbuf, 0);
            if (r < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
                on_end(c, strerror(errno));
                return;
            }
            if (r == 0) { on_end(c, "closed by the server"); return; }
        }
        on_bytes(c, rbuf, (size_t)r);
        if (c->fd < 0 || c->gen != gen) return;
        /* a short read drained the socket; epoll (level-triggered) says when there is more */
#ifdef CGEN_TLS
        if (c->ssl) { if (SSL_pending(c->ssl) > 0 || (size_t)r == sizeof rbuf) continue; return; }
#endif
        if ((size_t)r < sizeof rbuf) return;
    }
}

static void check_deadlines(conn_t *arr, int n, uint64_t t) {
    int i;
    for (i = 0; i < n; i++) {
        conn_t *c = &arr[i];
        if (c->fd < 0 || c->st == ST_READY || t < c->deadline) continue;
        if (c->st == ST_WAITEOF) on_end(c, "closed"); /* close frames exchanged; no TCP close in 2 s */
        else { c->tries = 99; on_end(c, "handshake timeout"); }
    }
}

/* run the loop until done() or the deadline (µs, 0: none) */
static void loop_until(int (*done)(void), uint64_t deadline) {
    struct epoll_event evs[512];
    uint64_t last_check = now_us();
    for (;;) {
        int n, i, timeout = 100;
        uint64_t t = now_us();
        if (done && done()) return;
        if (deadline && t >= deadline) return;
        if (deadline && deadline - t < 100000u) timeout = (int)((deadline - t) / 1000u) + 1;
        n = epoll_wait(ep, evs, 512, timeout);
        if (n < 0 && errno != EINTR) die("epoll_wait: %s", strerror(errno));
        for (i = 0; i < n; i++) on_event(evs[i].data.ptr, evs[i].events);
        t = now_us();
        if (t - last_check > 100000u) {
            check_deadlines(conns, nconns, t);
            if (pubs) check_deadlines(pubs, opt_pubs, t);
            if (progress_at) sat_watchdog(t);
            last_check = t;
        }
    }
}

/* -- setup: open a set of connections, at most opt_connect_concurrency at once -- */

static conn_t *open_set;
static int open_n, open_next;

static int opening_done(void) {
    int i, pending = 0;
    for (i = 0; i < open_next; i++) {
        int st = open_set[i].st;
        if (st != ST_READY && st != ST_DEAD) pending++;
    }
    while (open_next < open_n && pending < opt_connect_concurrency) {
        conn_open(&open_set[open_next++]);
        pending++;
    }
    return open_next == open_n && pending == 0;
}

static void open_all(conn_t *arr, int n, uint64_t deadline) {
    open_set = arr;
    open_n = n;
    open_next = 0;
    loop_until(opening_done, deadline);
}

static conn_t *new_conns(int n, int kind, int *url_list, int nurl_list) {
    conn_t *arr = calloc((size_t)n, sizeof *arr);
    int i;
    if (!arr) die("out of memory");
    for (i = 0; i < n; i++) {
        arr[i].fd = -1;
        arr[i].st = ST_DEAD;
        arr[i].kind = kind;
        arr[i].idx = i;
        arr[i].token = i;
        arr[i].url = url_list[i % nurl_list];
    }
    return arr;
}

/* -- modes ---------------------------------------------------------------- */

static void hs_start(conn_t *c) {
    c->tries = 0;
    c->token++;
    conn_open(c);
}

static int hs_none_open(void) {
    int i;
    for (i = 0; i < nconns; i++)
        if (conns[i].fd >= 0) return 0;
    return 1;
}

static void mode_handshake(void) {
    int i, all[MAX_URLS];
    uint64_t t0, t1;
    long ok;
    for (i = 0; i < nurls; i++) all[i] = i;
    nconns = opt_concurrency;
    conns = new_conns(nconns, K_HS, all, 1);
    mark("hs_start");
    t0 = now_us();
    hs_end_at = t0 + (uint64_t)(opt_duration * 1e6);
    for (i = 0; i < nconns; i++) hs_start(&conns[i]);
    loop_until(NULL, hs_end_at);
    t1 = now_us();
    ok = hs_ok;
    mark("hs_end");
    loop_until(hs_none_open, now_us() + 5000000u); /* let the stragglers finish */
    qsort(hs_lat, hs_nlat, sizeof *hs_lat, cmp_double);
    printf("RESULT {\"mode\":\"handshake\",\"generator\":\"c\",\"ok\":%ld,\"errors\":%ld,\"first_error\":", ok, errors);
    json_str(stdout, first_error);
    printf(",\"seconds\":%.4f,\"per_s\":%.2f,\"p50_ms\":", (double)(t1 - t0) / 1e6, (double)ok / ((double)(t1 - t0) / 1e6));
    json_num(stdout, percentile(hs_lat, hs_nlat, 50), hs_nlat > 0);
    printf(",\"p99_ms\":");
    json_num(stdout, percentile(hs_lat, hs_nlat, 99), hs_nlat > 0);
    printf("}\n");
    fflush(stdout);
}

static int all_completed(void) {
    int p;
    for (p = 0; p < opt_pubs; p++)
        if (completed[p] < published[p]) return 0;
    return 1;
}

static int lat_done(void) { return lat_got >= opt_n; }

static void mode_fanout(void) {
    uint64_t t_setup = now_us(), t0, t1, end;
    long long got = 0, nbytes = 0, undelivered = 0;
    long lat_messages = 0, timeouts = 0;
    double sat_seconds = 0, lat_seconds = 0;
    int p, i, have_sat = opt_sat > 0, have_lat = opt_lat > 0;

    nconns = opt_n;
    conns = new_conns(opt_n, K_SUB, sub_urls, nsub_urls);
    open_all(conns, opt_n, now_us() + 120000000u);
    if (ready_count < opt_n) die("only %ld of %d subscribers ready: %s", ready_count, opt_n, first_error ? first_error : "?");
    pubs = new_conns(opt_pubs, K_PUB, pub_urls, npub_urls);
    for (i = 0; i < opt_pubs; i++) pubs[i].token = i + opt_n;
    open_all(pubs, opt_pubs, now_us() + 60000000u);
    if (ready_count < opt_n + opt_pubs) die("publishers not ready: %s", first_error ? first_error : "?");
    published = calloc((size_t)opt_pubs, sizeof *published);
    completed = calloc((size_t)opt_pubs, sizeof *completed);
    slot_count = calloc((size_t)(opt_pubs * opt_inflight), sizeof *slot_count);
    progress_at = calloc((size_t)opt_pubs, sizeof *progress_at);
    if (!published || !completed || !slot_count || !progress_at) die("out of memory");
    if (opt_settle_ms > 0) loop_until(NULL, now_us() + (uint64_t)opt_settle_ms * 1000u);
    t_setup = now_us() - t_setup;

    if (have_sat) {
        phase = PH_SAT;
        delivered = bytes_in = 0;
        mark("sat_start");
        t0 = now_us();
        for (p = 0; p < opt_pubs; p++) progress_at[p] = t0;
        sat_running = 1;
        for (p = 0; p < opt_pubs; p++) top_up(p);
        loop_until(NULL, t0 + (uint64_t)(opt_sat * 1e6));
        t1 = now_us();
        got = delivered;
        nbytes = bytes_in;
        sat_running = 0;
        phase = PH_DRAIN;
        mark("sat_end");
        sat_seconds = (double)(t1 - t0) / 1e6;
        loop_until(all_completed, now_us() + 10000000u);
        for (p = 0; p < opt_pubs; p++) undelivered += (published[p] - completed[p]) * opt_n;
    }
    if (have_lat) {
        phase = PH_LAT;
        nlat = 0;
        mark("lat_start");
        t0 = now_us();
        end = t0 + (uint64_t)(opt_lat * 1e6);
        while (now_us() < end) {
            lat_got = 0;
            publish((int)(lat_messages % opt_pubs));
            lat_messages++;
            loop_until(lat_done, now_us() + 5000000u);
            if (lat_got < opt_n) timeouts++;
        }
        t1 = now_us();
        lat_seconds = (double)(t1 - t0) / 1e6;
        phase = PH_DONE;
        mark("lat_end");
        qsort(lat_samples, nlat, sizeof *lat_samples, cmp_double);
    }

    printf("RESULT {\"mode\":\"fanout\",\"generator\":\"c\",\"n\":%d,\"pubs\":%d,\"stalled\":false,\"setup_seconds\":%.3f",
           opt_n, opt_pubs, (double)t_setup / 1e6);
    if (have_sat)
        printf(",\"sat\":{\"deliveries\":%lld,\"seconds\":%.4f,\"per_s\":%.2f,\"messages_per_s\":%.2f,"
               "\"frame_bytes\":%.1f,\"inflight\":%d,\"pubs\":%d,\"undelivered_after_drain\":%lld,"
               "\"stuck_messages\":%ld}",
               got, sat_seconds, (double)got / sat_seconds, (double)got / opt_n / sat_seconds,
               got ? (double)nbytes / (double)got : 0.0, opt_inflight, opt_pubs, undelivered, stuck_messages);
    if (have_lat) {
        printf(",\"lat\":{\"messages\":%ld,\"samples\":%zu,\"seconds\":%.4f,\"timeouts\":%ld,\"p50_ms\":",
               lat_messages, nlat, lat_seconds, timeouts);
        json_num(stdout, percentile(lat_samples, nlat, 50), nlat > 0);
        printf(",\"p90_ms\":");
        json_num(stdout, percentile(lat_samples, nlat, 90), nlat > 0);
        printf(",\"p99_ms\":");
        json_num(stdout, percentile(lat_samples, nlat, 99), nlat > 0);
        printf(",\"max_ms\":");
        json_num(stdout, nlat ? lat_samples[nlat - 1] : 0, nlat > 0);
        printf(",\"messages_per_s\":%.2f}", (double)lat_messages / lat_seconds);
    }
    printf(",\"publisher_errors\":%ld,\"publisher_last_error\":", publisher_errors);
    json_str(stdout, publisher_errors ? publisher_last_error : NULL);
    printf(",\"subscriber_closes\":%ld,\"subscriber_close_codes\":{", subscriber_closes);
    for (i = 0; i < nclose_codes; i++) printf("%s\"%d\":%d", i ? "," : "", close_codes[i], close_code_n[i]);
    printf("}}\n");
    fflush(stdout);
}

static void mode_idle(void) {
    uint64_t t0 = now_us();
    double setup;
    long open = 0, ready_after_setup;
    int i, all[MAX_URLS];
    for (i = 0; i < nurls; i++) all[i] = i;
    nconns = opt_n;
    conns = new_conns(opt_n, K_IDLE, all, nurls);
    open_all(conns, opt_n, now_us() + 600000000u);
    setup = (double)(now_us() - t0) / 1e6;
    ready_after_setup = ready_count;
    loop_until(NULL, now_us() + (uint64_t)opt_settle_ms * 1000u);
    mark_wait("idle");
    for (i = 0; i < nconns; i++)
        if (conns[i].st == ST_READY) open++;
    printf("RESULT {\"mode\":\"idle\",\"generator\":\"c\",\"n\":%d,\"open\":%ld,\"failures\":%ld,\"first_error\":",
           opt_n, open, setup_failed);
    json_str(stdout, first_error);
    printf(",\"closed_early\":%ld,\"setup_seconds\":%.3f}\n", ready_after_setup - open, setup);
    fflush(stdout);
    for (i = 0; i < nconns; i++) conn_close(&conns[i]);
}

int main(int argc, char **argv) {
    int i;
    if (argc < 2) die("usage: cgen handshake|fanout|idle --url URL --tokens FILE [options]");
    mode = argv[1];
    for (i = 2; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--url")) { if (nurls == MAX_URLS) die("too many urls"); parse_url(v, &urls[nurls++]); }
        else if (!strcmp(k, "--tokens")) read_tokens(v);
        else if (!strcmp(k, "--channel")) channel = v;
        else if (!strcmp(k, "--n")) opt_n = atoi(v);
        else if (!strcmp(k, "--pubs")) opt_pubs = atoi(v);
        else if (!strcmp(k, "--inflight")) opt_inflight = atoi(v);
        else if (!strcmp(k, "--pad")) opt_pad = atoi(v);
        else if (!strcmp(k, "--sat")) opt_sat = atof(v);
        else if (!strcmp(k, "--lat")) opt_lat = atof(v);
        else if (!strcmp(k, "--duration")) opt_duration = atof(v);
        else if (!strcmp(k, "--concurrency")) opt_concurrency = atoi(v);
        else if (!strcmp(k, "--connect-concurrency")) opt_connect_concurrency = atoi(v);
        else if (!strcmp(k, "--settle-ms")) opt_settle_ms = atoi(v);
        else if (!strcmp(k, "--sub-urls")) parse_list(v, sub_urls, &nsub_urls);
        else if (!strcmp(k, "--pub-urls")) parse_list(v, pub_urls, &npub_urls);
        else die("unknown option %s", k);
    }
    if (i < argc) die("option %s needs a value", argv[i]);
    if (!nurls) die("--url is required");
    if (!ntokens) die("--tokens is required");
    if (opt_n < 1 || opt_pubs < 1 || opt_inflight < 1 || opt_concurrency < 1 || opt_connect_concurrency < 1)
        die("--n, --pubs, --inflight, --concurrency must be >= 1");
    if (opt_pad < 0 || opt_pad >= (int)sizeof pad_text) die("--pad must be 0..%d", (int)sizeof pad_text - 1);
    memset(pad_text, 'x', (size_t)opt_pad);
    if (!nsub_urls) { for (i = 0; i < nurls; i++) sub_urls[i] = i; nsub_urls = nurls; }
    if (!npub_urls) { pub_urls[0] = 0; npub_urls = 1; }
    for (i = 0; i < nsub_urls; i++) if (sub_urls[i] < 0 || sub_urls[i] >= nurls) die("--sub-urls: no url %d", sub_urls[i]);
    for (i = 0; i < npub_urls; i++) if (pub_urls[i] < 0 || pub_urls[i] >= nurls) die("--pub-urls: no url %d", pub_urls[i]);
    if (getrandom(&rng_state, sizeof rng_state, 0) != sizeof rng_state || !rng_state) rng_state = now_us() | 1;
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1: %s", strerror(errno));
#ifdef CGEN_TLS
    SSL_library_init();
    ssl_ctx = SSL_CTX_new(TLS_client_method());
    if (!ssl_ctx) die("SSL_CTX_new failed");
    SSL_CTX_set_verify(ssl_ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_mode(ssl_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
#endif
    if (!strcmp(mode, "handshake")) mode_handshake();
    else if (!strcmp(mode, "fanout")) mode_fanout();
    else if (!strcmp(mode, "idle")) mode_idle();
    else die("unknown mode %s (handshake, fanout, idle)", mode);
    return 0;
}
