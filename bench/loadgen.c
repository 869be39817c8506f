/*
 * loadgen: epoll load generator for chatd (line protocol) and IRC servers (ngIRCd).
 *
 * One process, one thread, one epoll loop; every client is a non-blocking TCP socket to
 * 127.0.0.1. Each run executes one scenario and prints one JSON object on stdout:
 *
 *   fanout    N clients logged in, S senders send to #general with <= W in flight each
 *   rate      N clients logged in, S senders offer R msg/s in total (open loop, timerfd)
 *   idle      N clients logged in; server VmRSS before and after, per connection
 *   logins    N clients connect and log in at once; time until every login succeeded
 *   pingpong  P pairs exchange private messages, one in flight per pair; round trips
 *
 * The message text carries its send time (CLOCK_MONOTONIC ns, same clock on both ends
 * since senders and receivers live in this process): "~BENCH~ <ns>". A delivery is a
 * received line with that marker. An "ack" is chatd's OK for send_all/send, or, for IRC,
 * the PONG for the "PING" sent right after each PRIVMSG (IRC has no per-message reply;
 * the server handles a client's commands in order, so the PONG follows the PRIVMSG).
 *
 * CPU: utime+stime of the server (/proc/PID/stat) and of this process (getrusage) over
 * the measured phase, and of everything else (/proc/stat) to show a busy machine.
 * Build: cc -O2 -o loadgen loadgen.c (the Python runner, bench/loadgen.py, does it).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define PART_MAX 256         /* kept prefix of a partial line; the rest is not needed */
#define RING 4096            /* send timestamps of un-acked messages per sender */
#define RBUF (256 * 1024)    /* shared read buffer */
#define MARK "~BENCH~ "
#define MARK_LEN 8
#define TIMER_TAG UINT32_MAX /* epoll tag of the rate timer */

enum { P_CHATD, P_IRC };
enum { S_FREE, S_CONNECTING, S_GREET, S_LOGIN, S_JOIN, S_READY, S_DEAD };
enum { PH_SETUP, PH_SETTLE, PH_MEASURE, PH_DRAIN, PH_DONE };

typedef struct {
    int fd;
    uint8_t state;
    uint8_t epout; /* EPOLLOUT registered */
    uint8_t open;  /* part[] holds the start of an unfinished line */
    uint16_t plen; /* bytes in part[] (capped at PART_MAX) */
    char part[PART_MAX];
    char *wbuf; /* unsent output */
    uint32_t wlen, wcap;
    uint64_t t_start, t_ok, t_ready;
    uint64_t sent, acked, errs, deliv;
    uint64_t *ring; /* senders only */
    uint32_t rhead, rtail;
} conn_t;

typedef struct {
    uint32_t *b;
    uint64_t n, max_ns;
} hist_t;

/* options */
static int o_proto = P_CHATD, o_port = 0, o_clients = 5, o_senders = 1, o_inflight = 8;
static int o_pairs = 10, o_window = 8, o_server_pid = 0, o_join = 1;
static double o_duration = 1.0, o_rate = 1000.0, o_timeout = 120.0;
static const char *o_scenario = "fanout";
enum { K_FANOUT, K_RATE, K_IDLE, K_LOGINS, K_PINGPONG };
static int kind = -1;
static const char *o_prefix = "u";
/* --ports P1,P2,...: client i connects to ports[i % n] (several nodes, issue 16);
 * --server-pid accepts a list too: the CPU and RSS figures are their sums. */
#define LIST_MAX 16
static int o_ports[LIST_MAX], o_nports, o_pids[LIST_MAX], o_npids;
static double srv_each0[LIST_MAX], srv_each1[LIST_MAX];

static int parse_list(const char *s, int *out) {
    int n = 0;
    while (*s && n < LIST_MAX) {
        out[n++] = atoi(s);
        s = strchr(s, ',');
        if (!s) break;
        s++;
    }
    return n;
}

/* state */
static conn_t *C;
static int N, ep, timer_fd = -1, phase = PH_SETUP;
static int next_connect, n_ready, n_pending, n_failed, n_dead, n_login_err;
static uint64_t t_begin, last_rx, rx_bytes;
static uint64_t deliv_total, deliv_window, errs_total, notices, skipped;
static uint64_t sent_total, acked_total, acked_window, rr_sender;
static uint64_t pings, rt_done; /* pingpong: sent by the A side, round trips completed */
static hist_t h_lat, h_ack, h_login;
static char *rbuf;

static const char USAGE[] =
    "usage: loadgen --port P [--proto chatd|irc] [--scenario fanout|rate|idle|logins|pingpong]\n"
    "  [--clients N] [--senders S] [--inflight W] [--duration SEC] [--rate MSG_PER_S]\n"
    "  [--pairs P] [--window LOGINS_PENDING] [--timeout SETUP_SEC] [--server-pid PID]\n"
    "  [--prefix NAME_PREFIX] [--no-join] [--ports P1,P2,...] [--server-pid PID1,PID2,...]\n";

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "loadgen: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(2);
}

/* ---- histogram: 1 us buckets below 100 ms, 100 us buckets up to 100 s ---- */
#define H_FINE 100000u
#define H_SIZE (H_FINE + 999000u)

static void hist_init(hist_t *h) {
    h->b = calloc(H_SIZE, sizeof(uint32_t));
    if (!h->b) die("out of memory");
}

static void hist_add(hist_t *h, uint64_t ns) {
    uint64_t us = ns / 1000, i = us < H_FINE ? us : H_FINE + (us - H_FINE) / 100;
    if (i >= H_SIZE) i = H_SIZE - 1;
    h->b[i]++;
    h->n++;
    if (ns > h->max_ns) h->max_ns = ns;
}

static double hist_pct_ms(const hist_t *h, double p) {
    if (h->n == 0) return 0.0;
    uint64_t want = (uint64_t)(p / 100.0 * (double)h->n), seen = 0;
    if (want >= h->n) want = h->n - 1;
    for (uint64_t i = 0; i < H_SIZE; i++) {
        seen += h->b[i];
        if (seen > want) {
            uint64_t us = i < H_FINE ? i : H_FINE + (i - H_FINE) * 100;
            return (double)us / 1000.0;
        }
    }
    return (double)h->max_ns / 1e6;
}

static void hist_json(const char *name, const hist_t *h) {
    printf("\"%s\":{\"n\":%llu,\"p50\":%.3f,\"p99\":%.3f,\"max\":%.3f}", name,
           (unsigned long long)h->n, hist_pct_ms(h, 50), hist_pct_ms(h, 99),
           (double)h->max_ns / 1e6);
}

/* ---- /proc sampling ---- */
static double pid_cpu_s(int pid) {
    if (!pid) return 0.0;
    char path[64], buf[2048];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0.0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* comm may contain spaces */
    if (!p) return 0.0;
    unsigned long long ut = 0, st = 0;
    /* after ")": state(3) ppid ... utime is field 14, stime 15 */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return 0.0;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* The servers' CPU seconds, summed; each one's is kept in `each` when given. */
static double server_cpu_s_each(double *each) {
    double sum = 0.0;
    for (int k = 0; k < o_npids; k++) {
        double v = pid_cpu_s(o_pids[k]);
        if (each) each[k] = v;
        sum += v;
    }
    return sum;
}

static double server_cpu_s(void) { return server_cpu_s_each(NULL); }

static long pid_rss_kib(int pid) {
    if (!pid) return 0;
    char path[64], line[256];
    long kb = 0;
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1) break;
    fclose(f);
    return kb;
}

static long server_rss_kib(void) {
    long sum = 0;
    for (int k = 0; k < o_npids; k++) sum += pid_rss_kib(o_pids[k]);
    return sum;
}

/* CPU seconds all CPUs spent busy (not idle, not iowait), from /proc/stat. The softirq
 * share is also in the stime of the process it interrupted, so busy - server - loadgen
 * is what other processes (and steal) took. */
static double host_busy_s(void) {
    unsigned long long v[8] = {0};
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return 0.0;
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    if (n != 8) return 0.0;
    unsigned long long busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
    return (double)busy / (double)sysconf(_SC_CLK_TCK);
}

static double self_cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* ---- connections ---- */
static void ep_mod(int i, int want_out) {
    struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.u32 = (uint32_t)i};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, C[i].fd, &ev) < 0) die("epoll_ctl: %s", strerror(errno));
    C[i].epout = (uint8_t)want_out;
}

static void conn_close(int i, int failed) {
    conn_t *c = &C[i];
    if (c->fd < 0) return;
    struct linger lg = {1, 0}; /* RST: no TIME_WAIT, ports stay free for the next run */
    setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(c->fd);
    c->fd = -1;
    if (c->state != S_READY && c->state != S_DEAD) n_pending--;
    if (failed && c->state == S_READY) n_dead++;
    if (failed && c->state != S_READY && c->state != S_DEAD) n_failed++;
    c->state = S_DEAD;
}

static void flush_out(int i) {
    conn_t *c = &C[i];
    while (c->wlen > 0) {
        ssize_t k = send(c->fd, c->wbuf, c->wlen, MSG_NOSIGNAL);
        if (k < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            if (errno == EINTR) continue;
            conn_close(i, 1);
            return;
        }
        memmove(c->wbuf, c->wbuf + k, c->wlen - (uint32_t)k);
        c->wlen -= (uint32_t)k;
    }
    if ((c->wlen > 0) != (c->epout != 0)) ep_mod(i, c->wlen > 0);
}

static void out(int i, const char *fmt, ...) {
    conn_t *c = &C[i];
    if (c->fd < 0) return;
    char tmp[8192];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || n >= (int)sizeof tmp) die("command too long");
    if (c->wlen + (uint32_t)n > c->wcap) {
        uint32_t cap = c->wcap ? c->wcap : 1024;
        while (cap < c->wlen + (uint32_t)n) cap *= 2;
        c->wbuf = realloc(c->wbuf, cap);
        if (!c->wbuf) die("out of memory");
        c->wcap = cap;
    }
    memcpy(c->wbuf + c->wlen, tmp, (size_t)n);
    c->wlen += (uint32_t)n;
    if (!c->epout) flush_out(i);
}

static void start_connect(int i) {
    conn_t *c = &C[i];
    c->t_start = now_ns();
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) die("socket: %s (raise ulimit -n)", strerror(errno));
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int port = o_nports ? o_ports[i % o_nports] : o_port;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    c->state = S_CONNECTING;
    n_pending++;
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS) {
        conn_close(i, 1);
        return;
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u32 = (uint32_t)i};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl: %s", strerror(errno));
    c->epout = 1;
}

/* Opens connections while fewer than o_window logins are pending (0: all at once). */
static void pump_connects(void) {
    while (next_connect < N && (o_window <= 0 || n_pending < o_window)) start_connect(next_connect++);
}

static void send_login(int i) {
    if (o_proto == P_CHATD) {
        out(i, "login %s%d\n", o_prefix, i);
    } else {
        out(i, "NICK %s%d\r\nUSER %s%d 0 * :bench\r\n", o_prefix, i, o_prefix, i);
    }
    C[i].state = S_LOGIN;
}

static void became_ready(int i) {
    C[i].state = S_READY;
    C[i].t_ready = now_ns();
    n_ready++;
    n_pending--;
    hist_add(&h_login, C[i].t_ready - C[i].t_start);
}

/* ---- traffic ---- */
static int is_sender(int i) { return i < o_senders; }

static void send_msg(int i) {
    conn_t *c = &C[i];
    if (c->state != S_READY) return;
    if (c->ring && c->rhead - c->rtail >= RING) {
        skipped++;
        return;
    }
    uint64_t t = now_ns();
    if (o_proto == P_CHATD)
        out(i, "send_all " MARK "%llu\n", (unsigned long long)t);
    else
        out(i, "PRIVMSG #general :" MARK "%llu\r\nPING :b\r\n", (unsigned long long)t);
    if (c->ring) c->ring[c->rhead++ % RING] = t;
    c->sent++;
    sent_total++;
}

static void send_pm(int from, int to, unsigned long long t) {
    if (o_proto == P_CHATD)
        out(from, "send %s%d " MARK "%llu\n", o_prefix, to, t);
    else
        out(from, "PRIVMSG %s%d :" MARK "%llu\r\n", o_prefix, to, t);
    C[from].sent++;
    sent_total++;
    if (from % 2 == 0) pings++;
}

static int is_pingpong(void) { return kind == K_PINGPONG; }
static int is_fanout(void) { return kind == K_FANOUT; }

/* The digits at p (the send timestamp); cheaper than strtoull on the hot path. */
static uint64_t parse_u64(const char *p, const char *end) {
    uint64_t v = 0;
    while (p < end && *p >= '0' && *p <= '9') v = v * 10 + (uint64_t)(*p++ - '0');
    return v;
}

/* The text after the marker, or NULL; memchr for '~' is much cheaper than memmem. */
static const char *find_mark(const char *s, const char *e) {
    while ((s = memchr(s, '~', (size_t)(e - s))) != NULL) {
        if ((size_t)(e - s) >= MARK_LEN && memcmp(s, MARK, MARK_LEN) == 0) return s + MARK_LEN;
        s++;
    }
    return NULL;
}

static void on_ack(int i, int ok) {
    conn_t *c = &C[i];
    if (!ok) {
        c->errs++;
        errs_total++;
    }
    if (!c->ring || c->rhead == c->rtail) return; /* login-time or pingpong OKs */
    uint64_t t = c->ring[c->rtail++ % RING];
    if (ok) {
        c->acked++;
        acked_total++;
        hist_add(&h_ack, now_ns() - t);
    }
    if (is_fanout() && phase == PH_MEASURE && c->rhead - c->rtail < (uint32_t)o_inflight) send_msg(i);
}

static void on_delivery(int i, const char *text, const char *end, uint64_t now) {
    unsigned long long t = parse_u64(text, end);
    C[i].deliv++;
    deliv_total++;
    if (phase == PH_MEASURE) deliv_window++;
    if (is_pingpong()) {
        if (i % 2 == 1) { /* B: echo the same timestamp back to A */
            send_pm(i, i - 1, t);
            return;
        }
        hist_add(&h_lat, now - t); /* A: a round trip completed */
        rt_done++;
        if (phase == PH_MEASURE) send_pm(i, i + 1, now_ns());
        return;
    }
    hist_add(&h_lat, now - t);
}

/* s (n bytes) starts with the string literal lit */
#define STARTS(s, n, lit) ((n) >= sizeof(lit) - 1 && memcmp((s), (lit), sizeof(lit) - 1) == 0)

static void line_chatd(int i, const char *s, size_t n, uint64_t now) {
    conn_t *c = &C[i];
    const char *m = find_mark(s, s + n);
    if (m) {
        on_delivery(i, m, s + n, now);
    } else if (STARTS(s, n, "* ")) {
        if (c->state == S_GREET) {
            send_login(i);
        } else {
            notices++;
        }
    } else if (STARTS(s, n, "OK")) {
        if (c->state == S_LOGIN) {
            c->t_ok = now;
            became_ready(i);
        } else {
            on_ack(i, 1);
        }
    } else if (STARTS(s, n, "ERR")) {
        if (c->state == S_LOGIN) {
            n_login_err++;
            if (n_login_err <= 3) fprintf(stderr, "loadgen: login error: %.*s\n", (int)n, s);
            conn_close(i, 1);
        } else {
            if (errs_total < 3) fprintf(stderr, "loadgen: error: %.*s\n", (int)n, s);
            on_ack(i, 0);
        }
    }
}

static void line_irc(int i, const char *s, size_t n, uint64_t now) {
    conn_t *c = &C[i];
    const char *cmd = s, *end = s + n;
    if (n > 0 && s[0] == ':') { /* skip the prefix */
        cmd = memchr(s, ' ', n);
        if (!cmd) return;
        cmd++;
    }
    size_t cl = (size_t)(end - cmd);
    if (STARTS(cmd, cl, "PRIVMSG ")) {
        const char *m = find_mark(cmd, end);
        if (m) on_delivery(i, m, end, now);
    } else if (STARTS(cmd, cl, "PONG ")) {
        on_ack(i, 1);
    } else if (STARTS(cmd, cl, "PING ")) {
        out(i, "PONG %.*s\r\n", (int)(cl - 5), cmd + 5);
    } else if (STARTS(cmd, cl, "001 ")) {
        c->t_ok = now;
        if (o_join) {
            out(i, "JOIN #general\r\n");
            c->state = S_JOIN;
        } else {
            became_ready(i);
        }
    } else if (STARTS(cmd, cl, "366 ")) {
        if (c->state == S_JOIN) became_ready(i);
    } else if (STARTS(cmd, cl, "ERROR ") ||
               (cl > 4 && (cmd[0] == '4' || cmd[0] == '5') && cmd[3] == ' ' &&
                !STARTS(cmd, cl, "422 "))) { /* 422: no MOTD, harmless */
        if (c->state != S_READY) {
            n_login_err++;
            if (n_login_err <= 3) fprintf(stderr, "loadgen: login error: %.*s\n", (int)n, s);
            conn_close(i, 1);
        } else {
            errs_total++;
            c->errs++;
            if (errs_total <= 3) fprintf(stderr, "loadgen: error: %.*s\n", (int)n, s);
        }
    } else {
        notices++;
    }
}

static void handle_line(int i, const char *s, size_t n, uint64_t now) {
    if (n > 0 && s[n - 1] == '\r') n--;
    if (o_proto == P_CHATD)
        line_chatd(i, s, n, now);
    else
        line_irc(i, s, n, now);
}

static void on_readable(int i) {
    conn_t *c = &C[i];
    for (int rounds = 0; rounds < 4 && c->fd >= 0; rounds++) {
        ssize_t k = recv(c->fd, rbuf, RBUF, 0);
        if (k == 0) {
            conn_close(i, phase != PH_DONE);
            return;
        }
        if (k < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            if (errno == EINTR) continue;
            conn_close(i, 1);
            return;
        }
        uint64_t now = now_ns();
        last_rx = now;
        rx_bytes += (uint64_t)k;
        const char *p = rbuf, *e = rbuf + k;
        while (p < e && c->fd >= 0) {
            const char *nl = memchr(p, '\n', (size_t)(e - p));
            size_t seg = (size_t)((nl ? nl : e) - p);
            if (c->open) { /* continue a partial line, keeping only its prefix */
                size_t room = PART_MAX - c->plen, take = seg < room ? seg : room;
                memcpy(c->part + c->plen, p, take);
                c->plen = (uint16_t)(c->plen + take);
                if (nl) {
                    c->open = 0;
                    handle_line(i, c->part, c->plen, now);
                }
            } else if (nl) {
                handle_line(i, p, seg, now);
            } else {
                c->plen = (uint16_t)(seg < PART_MAX ? seg : PART_MAX);
                memcpy(c->part, p, c->plen);
                c->open = 1;
            }
            p += seg + (nl ? 1 : 0);
        }
        if (k < RBUF) return;
    }
}

static void on_writable(int i) {
    conn_t *c = &C[i];
    if (c->state == S_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            conn_close(i, 1);
            return;
        }
        ep_mod(i, 0);
        if (o_proto == P_CHATD)
            c->state = S_GREET;
        else
            send_login(i);
        return;
    }
    flush_out(i);
}

/* ---- the loop ---- */
typedef int (*cond_fn)(void);

/* Runs the event loop until cond() holds or the deadline (absolute ns) passes. */
static int loop_until(cond_fn cond, uint64_t deadline) {
    struct epoll_event evs[512];
    while (!cond()) {
        uint64_t now = now_ns();
        if (now >= deadline) return 0;
        uint64_t left_ms = (deadline - now) / 1000000 + 1;
        int n = epoll_wait(ep, evs, 512, left_ms > 50 ? 50 : (int)left_ms);
        if (n < 0 && errno != EINTR) die("epoll_wait: %s", strerror(errno));
        for (int k = 0; k < n; k++) {
            uint32_t i = evs[k].data.u32;
            if (i == TIMER_TAG) {
                uint64_t ticks = 0;
                if (read(timer_fd, &ticks, sizeof ticks) == sizeof ticks && phase == PH_MEASURE)
                    for (uint64_t t = 0; t < ticks; t++) send_msg((int)(rr_sender++ % (uint64_t)o_senders));
                continue;
            }
            if (C[i].fd < 0) continue;
            /* connect completion first: the greeting may arrive in the same event */
            if (C[i].state == S_CONNECTING) on_writable((int)i);
            if (C[i].fd >= 0 && (evs[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                on_readable((int)i);
            if (C[i].fd >= 0 && (evs[k].events & EPOLLOUT)) on_writable((int)i);
        }
        if (phase == PH_SETUP) pump_connects();
    }
    return 1;
}

static uint64_t quiet_ns;
static int c_setup_done(void) { return next_connect >= N && n_pending <= 0; }
static int c_quiet(void) { return now_ns() - last_rx >= quiet_ns; }
static int c_never(void) { return 0; }

static uint64_t expected_deliveries(void) {
    uint64_t exp = 0;
    for (int i = 0; i < N; i++)
        if (C[i].state == S_READY) exp += acked_total - C[i].acked;
    return exp;
}

static int c_drained(void) {
    for (int i = 0; i < o_senders && i < N; i++)
        if (C[i].fd >= 0 && C[i].rhead != C[i].rtail) return 0;
    if (is_pingpong()) return rt_done >= pings;
    return deliv_total >= expected_deliveries();
}

/* drain: until everything arrived, or nothing arrived for 3 s, or 60 s */
static void drain(void) {
    phase = PH_DRAIN;
    uint64_t t0 = now_ns(), end = t0 + 60000000000ull;
    last_rx = t0;
    while (!c_drained() && now_ns() < end) {
        quiet_ns = 3000000000ull;
        if (c_quiet()) break;
        loop_until(c_drained, now_ns() + 200000000ull);
    }
}

/* Connects and logs in every client; returns when all are ready or failed. */
static void setup(void) {
    phase = PH_SETUP;
    pump_connects();
    loop_until(c_setup_done, now_ns() + (uint64_t)(o_timeout * 1e9));
}

/* Waits until nothing arrived for 0.5 s (IRC JOIN floods, notices), at most 30 s. */
static void settle(void) {
    phase = PH_SETTLE;
    quiet_ns = 500000000ull;
    last_rx = now_ns();
    loop_until(c_quiet, now_ns() + 30000000000ull);
}

int main(int argc, char **argv) {
    static struct option lo[] = {
        {"proto", 1, 0, 'P'},   {"port", 1, 0, 'p'},     {"scenario", 1, 0, 's'},
        {"clients", 1, 0, 'n'}, {"senders", 1, 0, 'S'},  {"inflight", 1, 0, 'w'},
        {"duration", 1, 0, 'd'}, {"rate", 1, 0, 'r'},    {"pairs", 1, 0, 'a'},
        {"window", 1, 0, 'W'},  {"server-pid", 1, 0, 'x'}, {"timeout", 1, 0, 't'},
        {"prefix", 1, 0, 'f'},  {"no-join", 0, 0, 'j'},  {"ports", 1, 0, 'o'},
        {0, 0, 0, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (ch) {
        case 'P': o_proto = strcmp(optarg, "irc") == 0 ? P_IRC : P_CHATD; break;
        case 'p': o_port = atoi(optarg); break;
        case 's': o_scenario = optarg; break;
        case 'n': o_clients = atoi(optarg); break;
        case 'S': o_senders = atoi(optarg); break;
        case 'w': o_inflight = atoi(optarg); break;
        case 'd': o_duration = atof(optarg); break;
        case 'r': o_rate = atof(optarg); break;
        case 'a': o_pairs = atoi(optarg); break;
        case 'W': o_window = atoi(optarg); break;
        case 'x': o_npids = parse_list(optarg, o_pids); o_server_pid = o_pids[0]; break;
        case 'o': o_nports = parse_list(optarg, o_ports); break;
        case 't': o_timeout = atof(optarg); break;
        case 'f': o_prefix = optarg; break;
        case 'j': o_join = 0; break;
        default: fputs(USAGE, stderr); return 2;
        }
    }
    if (o_nports > 0 && o_port <= 0) o_port = o_ports[0];
    if (o_port <= 0) {
        fputs(USAGE, stderr);
        return 2;
    }
    static const char *kinds[] = {"fanout", "rate", "idle", "logins", "pingpong"};
    for (int k = 0; k < 5; k++)
        if (strcmp(o_scenario, kinds[k]) == 0) kind = k;
    if (kind < 0) die("unknown scenario %s", o_scenario);
    int fanout = kind == K_FANOUT, rate = kind == K_RATE, idle = kind == K_IDLE,
        logins = kind == K_LOGINS, pp = kind == K_PINGPONG;
    N = pp ? 2 * o_pairs : o_clients;
    if (pp || idle || logins) o_senders = 0;
    if (o_senders > N) o_senders = N;
    if ((fanout || rate) && (o_senders < 1 || o_inflight < 1 || o_rate <= 0)) die("--senders, --inflight, --rate must be > 0");
    if (logins) o_window = 0; /* a storm: everyone at once */

    C = calloc((size_t)N, sizeof(conn_t));
    rbuf = malloc(RBUF);
    if (!C || !rbuf) die("out of memory");
    for (int i = 0; i < N; i++) {
        C[i].fd = -1;
        if (is_sender(i)) {
            C[i].ring = calloc(RING, sizeof(uint64_t));
            if (!C[i].ring) die("out of memory");
        }
    }
    hist_init(&h_lat);
    hist_init(&h_ack);
    hist_init(&h_login);
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1: %s", strerror(errno));

    t_begin = now_ns();
    long rss_before = server_rss_kib();
    double srv0 = server_cpu_s(), gen0 = self_cpu_s(), host0 = host_busy_s();
    setup();
    uint64_t t_setup = now_ns();
    double srv1 = server_cpu_s(), gen1 = self_cpu_s(), host1 = host_busy_s();
    settle();
    int complete = n_ready == N;
    if (!complete) {
        int cnt[S_DEAD + 1] = {0};
        for (int i = 0; i < N; i++) cnt[C[i].state]++;
        fprintf(stderr,
                "loadgen: setup incomplete: %d ready, %d connecting, %d awaiting greeting, "
                "%d awaiting login reply, %d awaiting join, %d failed, %d not started\n",
                cnt[S_READY], cnt[S_CONNECTING], cnt[S_GREET], cnt[S_LOGIN], cnt[S_JOIN],
                cnt[S_DEAD], cnt[S_FREE]);
    }
    uint64_t max_ok = 0, max_ready = 0;
    for (int i = 0; i < N; i++) {
        if (C[i].state != S_READY) continue;
        if (C[i].t_ok - t_begin > max_ok) max_ok = C[i].t_ok - t_begin;
        if (C[i].t_ready - t_begin > max_ready) max_ready = C[i].t_ready - t_begin;
    }
    long rss_after = server_rss_kib();
    uint64_t tm0 = now_ns(), tm1 = tm0;

    if (complete && (fanout || rate || pp)) {
        srv0 = server_cpu_s_each(srv_each0);
        gen0 = self_cpu_s();
        host0 = host_busy_s();
        phase = PH_MEASURE;
        tm0 = now_ns();
        if (fanout) {
            for (int i = 0; i < o_senders; i++)
                for (int k = 0; k < o_inflight; k++) send_msg(i);
        } else if (rate) {
            timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
            if (timer_fd < 0) die("timerfd_create: %s", strerror(errno));
            long period = (long)(1e9 / o_rate);
            struct itimerspec its = {{period / 1000000000L, period % 1000000000L},
                                     {period / 1000000000L, period % 1000000000L}};
            timerfd_settime(timer_fd, 0, &its, NULL);
            struct epoll_event ev = {.events = EPOLLIN, .data.u32 = TIMER_TAG};
            epoll_ctl(ep, EPOLL_CTL_ADD, timer_fd, &ev);
        } else {
            for (int i = 0; i < N; i += 2) send_pm(i, i + 1, now_ns());
        }
        loop_until(c_never, tm0 + (uint64_t)(o_duration * 1e9));
        tm1 = now_ns();
        srv1 = server_cpu_s_each(srv_each1);
        gen1 = self_cpu_s();
        host1 = host_busy_s();
        acked_window = acked_total;
        drain();
    }
    uint64_t rt_window = rt_done, exp = (fanout || rate) ? expected_deliveries() : 0;
    phase = PH_DONE;
    for (int i = 0; i < N; i++) conn_close(i, 0);

    double wall = (double)((complete && (fanout || rate || pp) ? tm1 - tm0 : t_setup - t_begin)) / 1e9;
    if (wall <= 0) wall = 1e-9;
    printf("{\"scenario\":\"%s\",\"proto\":\"%s\",\"complete\":%s,\"clients\":%d,"
           "\"ready\":%d,\"connect_failures\":%d,\"login_errors\":%d,\"disconnects\":%d,"
           "\"setup_s\":%.4f,\"phase_s\":%.4f,\"server_cpu_s\":%.3f,\"gen_cpu_s\":%.3f,"
           "\"server_cpu_pct\":%.1f,\"gen_cpu_pct\":%.1f,\"other_cpu_pct\":%.1f,"
           "\"errors\":%llu,\"notices\":%llu,"
           "\"rx_bytes\":%llu,",
           o_scenario, o_proto == P_CHATD ? "chatd" : "irc", complete ? "true" : "false", N,
           n_ready, n_failed - n_login_err, n_login_err, n_dead, (double)(t_setup - t_begin) / 1e9,
           wall, srv1 - srv0, gen1 - gen0, 100.0 * (srv1 - srv0) / wall,
           100.0 * (gen1 - gen0) / wall,
           100.0 * ((host1 - host0) - (srv1 - srv0) - (gen1 - gen0)) / wall,
           (unsigned long long)errs_total,
           (unsigned long long)notices, (unsigned long long)rx_bytes);
    /* the measured phase on CLOCK_MONOTONIC, to line up other processes' CPU samples */
    printf("\"measure_start_ns\":%llu,\"measure_end_ns\":%llu,", (unsigned long long)tm0,
           (unsigned long long)tm1);
    if (o_npids > 1) { /* each server's CPU % over the measured phase, in --server-pid order */
        printf("\"server_cpu_pct_each\":[");
        for (int k = 0; k < o_npids; k++)
            printf("%s%.1f", k ? "," : "", 100.0 * (srv_each1[k] - srv_each0[k]) / wall);
        printf("],");
    }
    if (fanout || rate) {
        printf("\"senders\":%d,\"inflight\":%d,\"offered_rate\":%.1f,\"messages_sent\":%llu,"
               "\"messages_acked\":%llu,\"skipped\":%llu,\"messages_per_s\":%.1f,"
               "\"deliveries\":%llu,\"deliveries_per_s\":%.1f,\"deliveries_total\":%llu,"
               "\"expected_deliveries\":%llu,\"lost\":%lld,",
               o_senders, fanout ? o_inflight : 0, rate ? o_rate : 0.0,
               (unsigned long long)sent_total, (unsigned long long)acked_total,
               (unsigned long long)skipped, (double)acked_window / wall,
               (unsigned long long)deliv_window, (double)deliv_window / wall,
               (unsigned long long)deliv_total, (unsigned long long)exp,
               (long long)exp - (long long)deliv_total);
        hist_json("latency_ms", &h_lat);
        printf(",");
        hist_json("ack_ms", &h_ack);
    } else if (pp) {
        printf("\"pairs\":%d,\"round_trips\":%llu,\"round_trips_per_s\":%.1f,\"lost\":%lld,",
               o_pairs, (unsigned long long)rt_window, (double)rt_window / wall,
               (long long)pings - (long long)rt_done);
        hist_json("rtt_ms", &h_lat);
    } else if (idle) {
        printf("\"rss_before_kib\":%ld,\"rss_after_kib\":%ld,\"rss_per_conn_kib\":%.3f",
               rss_before, rss_after, n_ready ? (double)(rss_after - rss_before) / n_ready : 0.0);
    } else {
        printf("\"all_ok_s\":%.4f,\"all_ready_s\":%.4f,", (double)max_ok / 1e9,
               (double)max_ready / 1e9);
        hist_json("login_ms", &h_login);
    }
    printf("}\n");
    return complete ? 0 : 1;
}
