/* delayproxy: a TCP relay that delays every byte by a fixed time in each
 * direction, to measure over a slow link where the kernel has no netem.
 *
 *   delayproxy LISTEN_PORT TARGET_ADDR TARGET_PORT [ONE_WAY_MS=25]
 *
 * Listens on 127.0.0.1:LISTEN_PORT; each connection is relayed to
 * TARGET_ADDR:TARGET_PORT by a child process of its own. What is read at
 * time t is written at t + ONE_WAY_MS, in order; an end of stream is passed
 * on (shutdown) after the same delay. A bench tool, not a product. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct chunk {
	struct chunk *next;
	double due;
	size_t len, off; /* len 0: end of stream */
	char data[];
};

struct dir {
	int from, to;
	struct chunk *head, *tail;
	size_t queued;
	int read_eof, done;
};

static double delay;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int push(struct dir *d, const char *p, size_t n)
{
	struct chunk *c = malloc(sizeof *c + n);
	if (c == NULL)
		return -1;
	c->next = NULL;
	c->due = now() + delay;
	c->len = n;
	c->off = 0;
	memcpy(c->data, p, n);
	if (d->tail)
		d->tail->next = c;
	else
		d->head = c;
	d->tail = c;
	d->queued += n;
	return 0;
}

static void pop(struct dir *d)
{
	struct chunk *c = d->head;
	d->head = c->next;
	if (d->head == NULL)
		d->tail = NULL;
	d->queued -= c->len;
	free(c);
}

/* Read what is there (at most 4 MB queued). Returns -1 on error. */
static int take(struct dir *d)
{
	char buf[65536];
	ssize_t n = read(d->from, buf, sizeof buf);
	if (n < 0)
		return errno == EINTR || errno == EAGAIN ? 0 : -1;
	if (n == 0)
		d->read_eof = 1;
	return push(d, buf, (size_t)n);
}

/* Write every due chunk that the socket takes. Returns -1 on error. */
static int give(struct dir *d, double t)
{
	while (d->head && d->head->due <= t) {
		struct chunk *c = d->head;
		if (c->len == 0) {
			shutdown(d->to, SHUT_WR);
			d->done = 1;
			pop(d);
			return 0;
		}
		ssize_t n = write(d->to, c->data + c->off, c->len - c->off);
		if (n < 0)
			return errno == EINTR || errno == EAGAIN ? 0 : -1;
		c->off += (size_t)n;
		if (c->off < c->len)
			return 0;
		pop(d);
	}
	return 0;
}

static void relay(int a, int b)
{
	struct dir d[2] = {{.from = a, .to = b}, {.from = b, .to = a}};
	while (!(d[0].done && d[1].done)) {
		struct pollfd p[4];
		int np = 0, ix[4];
		double t = now(), next = -1;
		for (int i = 0; i < 2; i++) {
			if (!d[i].read_eof && d[i].queued < (4u << 20)) {
				p[np] = (struct pollfd){.fd = d[i].from, .events = POLLIN};
				ix[np++] = i;
			}
			if (d[i].head) {
				if (d[i].head->due <= t) {
					p[np] = (struct pollfd){.fd = d[i].to, .events = POLLOUT};
					ix[np++] = 2 + i;
				} else if (next < 0 || d[i].head->due < next) {
					next = d[i].head->due;
				}
			}
		}
		int ms = next < 0 ? -1 : (int)((next - t) * 1000) + 1;
		if (poll(p, (nfds_t)np, ms) < 0 && errno != EINTR)
			return;
		for (int k = 0; k < np; k++) {
			if (!p[k].revents)
				continue;
			int i = ix[k] & 1;
			if (ix[k] < 2 ? take(&d[i]) : give(&d[i], now()))
				return;
		}
		for (int i = 0; i < 2; i++)
			if (give(&d[i], now()))
				return;
	}
}

static int dial(const char *addr, int port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
	if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1)
		return -1;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

int main(int argc, char **argv)
{
	if (argc < 4 || argc > 5) {
		fprintf(stderr, "usage: delayproxy LISTEN_PORT TARGET_ADDR TARGET_PORT [ONE_WAY_MS=25]\n");
		return 2;
	}
	delay = (argc == 5 ? atof(argv[4]) : 25) / 1000.0;
	int lport = atoi(argv[1]), tport = atoi(argv[3]);
	signal(SIGCHLD, SIG_IGN); /* children reaped by the kernel */
	signal(SIGPIPE, SIG_IGN);
	int ls = socket(AF_INET, SOCK_STREAM, 0), on = 1;
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((unsigned short)lport),
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	if (ls < 0 || setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) < 0 ||
			bind(ls, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(ls, 64) < 0) {
		perror("delayproxy: listen");
		return 1;
	}
	for (;;) {
		int c = accept(ls, NULL, NULL);
		if (c < 0) {
			if (errno == EINTR)
				continue;
			perror("delayproxy: accept");
			return 1;
		}
		pid_t pid = fork();
		if (pid == 0) {
			close(ls);
			int t = dial(argv[2], tport);
			if (t < 0)
				_exit(1);
			setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
			setsockopt(t, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
			relay(c, t);
			_exit(0);
		}
		close(c);
	}
}
