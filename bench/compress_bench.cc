// How fast the store's chunk path runs, and how small it makes each kind of
// memory, per zstd level: the measurement behind store::default_level()
// (bench/NOTES.md).  One 1 MiB chunk at a time, as the flush does;
// the flush runs one such stream per core.
//
//   build/bench/compress_bench [--benchmark_filter=...]
//
// Counters: bytes_per_second (raw bytes through the step), ratio (stored /
// raw), and for decompression the rate a restore reads at.
#include <benchmark/benchmark.h>
#include <zstd.h>

#include <array>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "base/hash.h"
#include "store/chunks.h"

namespace {

constexpr size_t kSize = 64 << 20;
constexpr size_t kChunk = 1 << 20;

// The three kinds of memory the benchmarks use (tests/progs/memhog.c).
const std::vector<char>& memory(int kind) {
  static std::vector<char> kinds[3];
  auto& m = kinds[kind];
  if (!m.empty()) return m;
  m.resize(kSize);
  std::mt19937_64 g(42);
  auto* w = reinterpret_cast<uint64_t*>(m.data());
  for (size_t i = 0; i < kSize / 8; i++) {
    uint64_t v = g();
    if (kind == 1 && (i / 512) % 2 == 0) v = 0;
    if (kind == 2) {
      double d = static_cast<double>(v >> 11) * (1.0 / 9007199254740992.0) - 0.5;
      std::memcpy(&v, &d, 8);
    }
    w[i] = v;
  }
  return m;
}

const char* kKinds[] = {"random", "halfzero", "matrix"};

void BM_Compress(benchmark::State& state) {
  const auto& m = memory(static_cast<int>(state.range(0)));
  int level = static_cast<int>(state.range(1));
  ZSTD_CCtx* ctx = ZSTD_createCCtx();
  std::vector<char> out(ZSTD_compressBound(kChunk));
  size_t stored = 0, raw = 0, off = 0;
  for (auto _ : state) {
    size_t n = ZSTD_compressCCtx(ctx, out.data(), out.size(), m.data() + off, kChunk, level);
    benchmark::DoNotOptimize(n);
    stored += n;
    raw += kChunk;
    off = (off + kChunk) % kSize;
  }
  ZSTD_freeCCtx(ctx);
  state.SetBytesProcessed(static_cast<int64_t>(raw));
  state.counters["ratio"] = static_cast<double>(stored) / static_cast<double>(raw);
  state.SetLabel(std::string(kKinds[state.range(0)]) + " level " + std::to_string(level));
}

void BM_Decompress(benchmark::State& state) {
  const auto& m = memory(static_cast<int>(state.range(0)));
  int level = static_cast<int>(state.range(1));
  std::vector<std::string> frames;
  for (size_t off = 0; off < kSize; off += kChunk) {
    std::string f(ZSTD_compressBound(kChunk), '\0');
    f.resize(ZSTD_compress(f.data(), f.size(), m.data() + off, kChunk, level));
    frames.push_back(f);
  }
  ZSTD_DCtx* ctx = ZSTD_createDCtx();
  std::vector<char> out(kChunk);
  size_t i = 0, raw = 0;
  for (auto _ : state) {
    const auto& f = frames[i++ % frames.size()];
    benchmark::DoNotOptimize(ZSTD_decompressDCtx(ctx, out.data(), kChunk, f.data(), f.size()));
    raw += kChunk;
  }
  ZSTD_freeDCtx(ctx);
  state.SetBytesProcessed(static_cast<int64_t>(raw));
  state.SetLabel(std::string(kKinds[state.range(0)]) + " level " + std::to_string(level));
}

// What the flush does to each chunk besides compressing it: content-defined
// cut points, then the chunk's name (SHA-256) and its quick checksum
// (XXH3-128); and each of those alone.  A restore from the store pays the
// SHA-256, one from the fast copy the XXH3.
enum Pass { kCut, kSha256, kXxh3, kAll };
void BM_CutAndHash(benchmark::State& state) {
  const auto& m = memory(0);
  auto pass = static_cast<Pass>(state.range(0));
  auto cuts = cryo::store::cut(m.data(), kSize);
  size_t raw = 0;
  for (auto _ : state) {
    if (pass == kCut || pass == kAll) benchmark::DoNotOptimize(cryo::store::cut(m.data(), kSize));
    size_t off = 0;
    for (auto len : cuts) {
      if (pass == kSha256 || pass == kAll) benchmark::DoNotOptimize(cryo::sha256_bytes(m.data() + off, len));
      if (pass == kXxh3 || pass == kAll) benchmark::DoNotOptimize(cryo::xxh3_bytes(m.data() + off, len));
      off += len;
    }
    raw += kSize;
  }
  state.SetBytesProcessed(static_cast<int64_t>(raw));
  state.SetLabel(std::array{"cut", "sha256", "xxh3", "cut+sha256+xxh3"}[pass]);
}

void Levels(benchmark::internal::Benchmark* b) {
  for (int kind = 0; kind < 3; kind++)
    for (int level : {-5, -1, 1, 3})
      b->Args({kind, level});
}

}  // namespace

BENCHMARK(BM_Compress)->Apply(Levels);
BENCHMARK(BM_Decompress)->Apply(Levels);
BENCHMARK(BM_CutAndHash)->DenseRange(kCut, kAll)->Unit(benchmark::kMillisecond);
BENCHMARK_MAIN();
