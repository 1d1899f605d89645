/*
 * The load generator in C, used when a C compiler is present (run.py builds
 * it into a temporary directory); same arguments and output as loadgen.py.
 * It keeps CONNS connections with DEPTH requests in flight each: for every
 * batch of replies read it sends as many new requests in one send(2).  At
 * one request in flight per connection the Python generator needs about as
 * much CPU as the server, which would hide the difference being measured.
 *
 *   loadgen PORT CONNS DEPTH DURATION WARMUP REQUEST SERVERPID
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static double procCpu(int pid) {
    char path[64], buf[4096];
    if (pid <= 0) return 0;
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p) return 0;
    unsigned long ut = 0, st = 0;
    /* after ")": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime */
    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st);
    return (ut + st) / (double)sysconf(_SC_CLK_TCK);
}

int main(int argc, char **argv) {
    if (argc < 8) {
        fprintf(stderr, "usage: loadgen PORT CONNS DEPTH DURATION WARMUP REQUEST SERVERPID\n");
        return 2;
    }
    int port = atoi(argv[1]), conns = atoi(argv[2]), depth = atoi(argv[3]);
    double duration = atof(argv[4]), warmup = atof(argv[5]);
    int serverPid = atoi(argv[7]);
    size_t reqLen = strlen(argv[6]) + 1;
    size_t maxBatch = (size_t)depth * 4 + 64;
    char *batch = malloc(reqLen * maxBatch);
    for (size_t i = 0; i < maxBatch; i++) {
        memcpy(batch + i * reqLen, argv[6], reqLen - 1);
        batch[i * reqLen + reqLen - 1] = '\n';
    }
    int ep = epoll_create1(0);
    int *fds = calloc(conns, sizeof(int));
    long *owed = calloc(conns, sizeof(long)); /* requests not yet sent */
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int i = 0; i < conns; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) { perror("connect"); return 1; }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        fds[i] = fd;
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
        if (send(fd, batch, reqLen * depth, 0) != (ssize_t)(reqLen * depth)) { perror("send"); return 1; }
    }
    static char buf[1 << 18];
    struct epoll_event events[1024];
    double start = now(), endWarmup = start + warmup, end = endWarmup + duration;
    double t0 = start, c0 = cpu(), s0 = procCpu(serverPid);
    long count = 0;
    int measuring = 0;
    for (;;) {
        double t = now();
        if (!measuring && t >= endWarmup) {
            measuring = 1; count = 0; t0 = t; c0 = cpu(); s0 = procCpu(serverPid);
        }
        if (t >= end) break;
        int n = epoll_wait(ep, events, 1024, 200);
        for (int k = 0; k < n; k++) {
            int i = events[k].data.u32;
            ssize_t got = recv(fds[i], buf, sizeof buf, 0);
            if (got <= 0) { fprintf(stderr, "server closed a connection\n"); return 1; }
            long lines = 0;
            for (char *p = buf; (p = memchr(p, '\n', buf + got - p)) != NULL; p++) lines++;
            count += lines;
            owed[i] += lines;
            while (owed[i] > 0) {
                long m = owed[i] < (long)maxBatch ? owed[i] : (long)maxBatch;
                ssize_t sent = send(fds[i], batch, reqLen * m, MSG_DONTWAIT);
                if (sent < 0) { if (errno == EAGAIN) break; perror("send"); return 1; }
                /* A partial send of a request is not expected with this little in flight. */
                owed[i] -= sent / reqLen;
                if ((size_t)sent < reqLen * m) break;
            }
        }
    }
    double elapsed = now() - t0, used = cpu() - c0, server = procCpu(serverPid) - s0;
    printf("{\"requests\": %ld, \"seconds\": %f, \"rate\": %f, \"cpu\": %f, \"cpu_share\": %f, "
           "\"server_cpu_share\": %f, \"client\": \"c\"}\n",
           count, elapsed, count / elapsed, used, used / elapsed, server / elapsed);
    return 0;
}
