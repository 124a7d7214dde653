/* utf7.c - placeholder until written. */
