/*
 * units.h - how walvault shows sizes and measures durations, the same way in every program.
 *
 * Sizes are binary (1 KiB = 1024 B) and always labelled so: "512 B", "1.5 KiB", "22.2 MiB",
 * "1.0 GiB". Durations of work are measured on the monotonic clock, never the wall clock (which
 * may step); times recorded in a repository come from the server's clock (see DESIGN.md).
 */
#ifndef WALVAULT_CORE_UNITS_H
#define WALVAULT_CORE_UNITS_H

#include <stddef.h>
#include <stdint.h>

/* Binary size with its unit into out (24 bytes are always enough). Returns out. */
char *wv_human_bytes(uint64_t n, char *out, size_t len);

/* Seconds on the monotonic clock (for elapsed times and deadlines). */
double wv_mono_s(void);

#endif
