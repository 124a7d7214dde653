/* transport.c - placeholder until written. */
