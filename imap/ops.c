/* ops.c - placeholder until written. */
