/* ring ROUNDS MS: an MPI program that carries a checksum.  Every round a
 * token goes around all ranks; each rank mixes the token into its own 1 MiB
 * of state and passes a new token on.  Rank 0 prints "round N checksum X"
 * after each round, then sleeps MS milliseconds, and at the end every rank
 * reports a checksum of its state, printed by rank 0 as "RESULT rank R X".  A run checkpointed,
 * killed and restored any number of times prints exactly what an
 * uninterrupted run prints: a lost or repeated message changes every later
 * checksum.  Built once per MPI (ring_openmpi, ring_mpich). */
#include <mpi.h>

#include "common.h"

#define WORDS (128u * 1024) /* 1 MiB of 64-bit words per rank */

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank, size;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (argc < 3) {
    if (rank == 0) fprintf(stderr, "usage: %s ROUNDS MS\n", argv[0]);
    MPI_Finalize();
    return 2;
  }
  long rounds = atol(argv[1]), ms = atol(argv[2]);
  setvbuf(stdout, NULL, _IOLBF, 0);
  unsigned long long* state = malloc(WORDS * sizeof *state);
  unsigned long long seed = 1000 + (unsigned long long)rank;
  for (unsigned i = 0; i < WORDS; i++) state[i] = mix64(&seed);
  int next = (rank + 1) % size, prev = (rank + size - 1) % size;
  for (long n = 1; n <= rounds; n++) {
    unsigned long long token = 0;
    if (rank != 0 || size == 1) {
      if (size > 1) MPI_Recv(&token, 1, MPI_UNSIGNED_LONG_LONG, prev, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    } else {
      token = (unsigned long long)n;
    }
    unsigned i = (unsigned)((token ^ (unsigned long long)n) % WORDS);
    state[i] = state[i] * 6364136223846793005ULL + token + (unsigned long long)rank;
    token = token * 31 + state[i];
    if (size > 1) {
      if (rank == 0) {
        MPI_Send(&token, 1, MPI_UNSIGNED_LONG_LONG, next, 0, MPI_COMM_WORLD);
        MPI_Recv(&token, 1, MPI_UNSIGNED_LONG_LONG, prev, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      } else {
        MPI_Send(&token, 1, MPI_UNSIGNED_LONG_LONG, next, 0, MPI_COMM_WORLD);
      }
    }
    if (rank == 0) {
      printf("round %ld checksum %016llx\n", n, token);
      sleep_ms(ms);
    }
    MPI_Barrier(MPI_COMM_WORLD);
  }
  unsigned long long total = 0;
  for (unsigned i = 0; i < WORDS; i++) total = total * 31 + state[i];
  /* Rank 0 prints them all, in rank order: output from several ranks
   * reaches the launcher in no fixed order. */
  unsigned long long* all = malloc((size_t)size * sizeof *all);
  MPI_Gather(&total, 1, MPI_UNSIGNED_LONG_LONG, all, 1, MPI_UNSIGNED_LONG_LONG, 0, MPI_COMM_WORLD);
  if (rank == 0)
    for (int r = 0; r < size; r++) printf("RESULT rank %d %016llx\n", r, all[r]);
  MPI_Finalize();
  return 0;
}
