/* uidset.c - placeholder until written. */
