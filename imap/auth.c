/* auth.c - placeholder until written. */
