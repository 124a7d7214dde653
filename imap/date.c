/* date.c - placeholder until written. */
