/* command.c - placeholder until written. */
