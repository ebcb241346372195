// Linux interfaces the event loop needs that Swift's Glibc module does not bring in.
#ifndef FLORIDAY_PROXY_CLINUX_SHIM_H
#define FLORIDAY_PROXY_CLINUX_SHIM_H
#include <sys/epoll.h>
#include <malloc.h>
#include <sys/socket.h>
#include <sys/eventfd.h>

// accept4(2) is declared only under _GNU_SOURCE, which Swift's Glibc module is built without.
extern int accept4(int fd, struct sockaddr *addr, socklen_t *addrlen, int flags);
#endif
