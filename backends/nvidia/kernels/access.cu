// SPDX-License-Identifier: MIT
// The GPU side of coh_device_access on the nvidia backend.  Compiled to PTX
// by gen-ptx.sh into access_ptx.h (checked in: building libcoherent needs no
// CUDA compiler); the driver JIT-compiles the PTX for the GPU at
// cuModuleLoadData.  The arithmetic is coh_block_sum and coh_pattern_word of
// include/coherent.h: a 4096-byte block's sum is its 64-bit words weighted by
// 2i+1 modulo 2^64; a fill writes pattern ^ (byte offset * 0x9E3779B97F4A7C15).

#define WORDS 512           // 64-bit words per 4096-byte block
#define THREADS 128         // the launch's block size (migrate.c's device access)

extern "C" __global__ void __launch_bounds__(THREADS)
coh_access(unsigned long long *base, unsigned long long nblocks, unsigned int ops,
	   unsigned long long pattern, unsigned long long *sums)
{
	__shared__ unsigned long long part[THREADS];
	for (unsigned long long b = blockIdx.x; b < nblocks; b += gridDim.x) {
		unsigned long long *w = base + b * WORDS;
		unsigned long long s = 0;
		for (unsigned int i = threadIdx.x; i < WORDS; i += THREADS) {
			if (ops & 1u)
				s += w[i] * (2ull * i + 1ull);
			if (ops & 2u)
				w[i] = pattern ^ ((b * 4096ull + i * 8ull) * 0x9E3779B97F4A7C15ull);
		}
		if (ops & 1u) {
			part[threadIdx.x] = s;
			__syncthreads();
			for (unsigned int k = THREADS / 2; k > 0; k >>= 1) {
				if (threadIdx.x < k)
					part[threadIdx.x] += part[threadIdx.x + k];
				__syncthreads();
			}
			if (threadIdx.x == 0)
				sums[b] = part[0];
			__syncthreads();
		}
	}
	// the stores must be visible to the CPU once the launch completes
	__threadfence_system();
}
