/* kernels_neon_dotprod.c - the AArch64 NEON table using the ARMv8.2 dot product
 * instruction (sdot, vdotq_s32) for the int8 products; compiled with +dotprod and chosen
 * only when getauxval reports asimddp. */
#define SOV_NEON_DOTPROD 1
#define NAME(x) neondp_##x
#include "kernels/arm/neon_impl.h"

const sov_kernels sov_kernels_neon_dotprod = NEON_TABLE("neon_dotprod");
