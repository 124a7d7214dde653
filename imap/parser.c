/* parser.c - placeholder until written. */
