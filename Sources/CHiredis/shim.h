// hiredis (Debian: libhiredis-dev), the Redis client of the shared rate budget: its
// protocol, reply parser and asynchronous context; the Redis module drives the socket.
#ifndef FLORIDAY_PROXY_CHIREDIS_SHIM_H
#define FLORIDAY_PROXY_CHIREDIS_SHIM_H
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#endif
