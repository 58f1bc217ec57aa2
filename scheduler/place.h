/* Placement of one job on one node: which GPUs, which cores (and so which OS CPUs) and which NUMA
 * memory, given what is already in use. Pure and stateless: the caller keeps the occupancy, and
 * any number of threads may place on one (finished, immutable) topology at once. */
#ifndef JZ_SCHED_PLACE_H
#define JZ_SCHED_PLACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jazari/error.h>

#include "scheduler/topo.h"

#define JZ_PLACE_REASON_LEN 256

/* Bitmaps are arrays of uint64_t words: bit i of word i/64 is item i. */
#define JZ_BITMAP_WORDS(n) (((n) + 63u) / 64u)

/* What is in use on the node now. Both bitmaps are borrowed for the call; NULL means "nothing
 * in use". gpu_busy covers jz_topo_gpu_count bits, core_busy jz_topo_core_count bits. */
struct jz_place_usage {
    const uint64_t *gpu_busy;
    const uint64_t *core_busy;
};

/* What a job asks for on one node. */
struct jz_place_request {
    unsigned gpus;             /* GPUs wanted, 0 for a CPU-only job (at most JZ_TOPO_MAX_GPUS) */
    unsigned cpus_per_gpu;     /* whole cores per GPU, from each GPU's own locality (0: none) */
    unsigned cpus;             /* whole cores for a CPU-only job (used when gpus == 0) */
    const char *model;         /* NULL or "": any; else a case-insensitive substring of the model */
    uint64_t min_memory_bytes; /* 0: any; a GPU of unknown memory never satisfies a minimum */
    bool quiet; /* jz_place_gpus: leave a fitting result's reason empty, for a caller that
                 * compares candidates and renders only the one it keeps (jz_place_describe) */
};

/* The answer. On fits == false only reason is meaningful (and the arrays are NULL). */
struct jz_place_result {
    bool fits;
    size_t gpu_count;
    size_t *gpus; /* topology GPU indexes, ascending (malloc'd) */
    size_t core_count;
    size_t *cores; /* topology core indexes, ascending (malloc'd): mark these busy */
    size_t cpu_count;
    int *cpus; /* OS processor numbers of those cores, ascending (malloc'd) */
    size_t numa_count;
    int *numa;                    /* NUMA OS indexes of the GPUs' (or cores') memory, ascending */
    enum jz_topo_link worst_link; /* worst pairwise link of the GPUs (SAME_DEVICE for <= 1 GPU) */
    char reason[JZ_PLACE_REASON_LEN]; /* one sentence explaining the choice or the refusal */
};

/* Places req on topology t (finished) given usage. Returns 0 with *res filled (fits true or
 * false) or a negative JZ_E* code for an invalid request or out of memory (then *res is left
 * untouched). After a 0 return the caller owns *res's arrays and frees them with
 * jz_place_result_free. */
int jz_place(const struct jz_topo *t, const struct jz_place_usage *usage,
             const struct jz_place_request *req, struct jz_place_result *res, struct jz_error *err);
/* Whether a GPU of this model meets a model constraint: `want` NULL or empty matches any, else
 * it must be a case-insensitive substring of `model` ("a100" meets "NVIDIA A100-SXM4-80GB").
 * The one rule for jobs' models, tenants' model quotas, bookings and prices. */
bool jz_place_model_matches(const char *model, const char *want);
/* Frees the arrays inside res (not res itself) and resets every field (counts 0, arrays NULL,
 * reason empty); NULL is accepted. */
void jz_place_result_free(struct jz_place_result *res);

/* Like jz_place, for a GPU set already chosen (by jz_place_gpu_set, possibly cached): assigns
 * each GPU its cores and fills *res (fits false when the cores are not free). set must hold
 * req->gpus free GPUs; model and memory constraints are not checked again. */
int jz_place_gpus(const struct jz_topo *t, const struct jz_place_usage *usage,
                  const struct jz_place_request *req, uint64_t set, struct jz_place_result *res,
                  struct jz_error *err);

/* Writes the sentence of a fitting result whose reason is empty (a quiet jz_place_gpus): its
 * GPUs, worst link, cores and NUMA nodes. */
void jz_place_describe(struct jz_place_result *res);

/* Lower-level entry used by the scheduler, which keeps its own cache: chooses the GPU set only.
 * free_mask has bit i set for each usable GPU i. On success writes the chosen set to *chosen and
 * returns 0; returns JZ_EBUSY when no k-set of free GPUs exists. eligible filtering (model,
 * memory, cores) is the caller's: pass only GPUs it accepts. Pure; no allocation. */
int jz_place_gpu_set(const struct jz_topo *t, uint64_t free_mask, unsigned k, uint64_t *chosen);

#endif
