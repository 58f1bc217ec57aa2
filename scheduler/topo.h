/* The plain topology model of one node: cores, NUMA nodes, GPUs and GPU-to-GPU distances.
 * Pure data (no hwloc here); scheduler/topo_hwloc.h builds it from a live machine or XML. */
#ifndef JZ_SCHED_TOPO_H
#define JZ_SCHED_TOPO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jazari/error.h>

/* Limits: a node description larger than this is refused with JZ_ELIMIT. */
#define JZ_TOPO_MAX_GPUS 64    /* logical GPUs per node (a GPU set fits one uint64_t) */
#define JZ_TOPO_MAX_CORES 4096 /* cores per node */
#define JZ_TOPO_MAX_PUS 8192   /* OS processor numbers are below this */

#define JZ_TOPO_PCI_ID_LEN 16 /* "DDDD:BB:DD.F" + NUL */
#define JZ_TOPO_MODEL_LEN 64
#define JZ_TOPO_OS_NAMES_LEN 128 /* "cuda0,nvml0,opencl0d0" */
#define JZ_TOPO_PCI_PATH_LEN 256 /* "0000:[00-3f]/0000:00:01.0/0000:02:00.0" */

/* How close two GPUs are, from closest to farthest. The order is the placement policy's order. */
enum jz_topo_link {
    JZ_TOPO_LINK_SAME_DEVICE = 0, /* two logical GPUs of one PCI device (MI300A CPX) */
    JZ_TOPO_LINK_NVLINK = 1,      /* direct NVLink/XGMI link or a shared NVSwitch */
    JZ_TOPO_LINK_PCI_SWITCH = 2,  /* below one PCIe switch */
    JZ_TOPO_LINK_HOST_BRIDGE = 3, /* below one host bridge */
    JZ_TOPO_LINK_NUMA = 4,        /* attached to one NUMA node */
    JZ_TOPO_LINK_PACKAGE = 5,     /* one package (socket) */
    JZ_TOPO_LINK_SYSTEM = 6,      /* across packages */
};
#define JZ_TOPO_LINK_COUNT 7

/* A GPU as the topology sees it. Strings are NUL-terminated, "" when unknown. */
struct jz_topo_gpu {
    size_t index;                        /* 0..gpu_count-1, in PCI bus id order */
    char pci_bus_id[JZ_TOPO_PCI_ID_LEN]; /* "0000:3b:00.0", lower-case hex */
    unsigned subdevice;                  /* logical GPU within its PCI device (CPX), else 0 */
    char model[JZ_TOPO_MODEL_LEN];       /* "NVIDIA H100 80GB HBM3" */
    char vendor[JZ_TOPO_MODEL_LEN];      /* "NVIDIA Corporation" */
    uint64_t memory_bytes;               /* 0 when unknown */
    int numa_os;                         /* OS index of its NUMA node, -1 when unknown */
    int package;                         /* OS index of its package, -1 when unknown */
    char os_names[JZ_TOPO_OS_NAMES_LEN]; /* comma-separated OS devices; "" for a PCI-only GPU */
    char pci_path[JZ_TOPO_PCI_PATH_LEN]; /* bridges from the host bridge down, '/'-separated */
    const size_t *local_cores;           /* topology core indexes local to the GPU; owned by
                                          * the topology */
    size_t local_core_count;
};

/* A core (the allocation unit for CPUs): its hardware threads as OS processor numbers. */
struct jz_topo_core {
    size_t index;   /* 0..core_count-1 */
    int numa_os;    /* -1 when unknown */
    int package;    /* -1 when unknown */
    const int *pus; /* OS processor numbers, ascending; owned by the topology */
    size_t pu_count;
};

struct jz_topo;

/* --- Reading a finished topology. Every pointer returned is owned by the topology and lives as
 * long as it. A finished topology is immutable, so it may be shared between threads and between
 * nodes of identical hardware. --- */

/* Destroys t (NULL is accepted). */
void jz_topo_destroy(struct jz_topo *t);

size_t jz_topo_gpu_count(const struct jz_topo *t);
size_t jz_topo_core_count(const struct jz_topo *t);
/* Usable OS processors (PUs) over all cores. */
size_t jz_topo_cpu_count(const struct jz_topo *t);
/* NULL when i is out of range. */
const struct jz_topo_gpu *jz_topo_gpu_at(const struct jz_topo *t, size_t i);
const struct jz_topo_core *jz_topo_core_at(const struct jz_topo *t, size_t i);
/* Distinct NUMA OS indexes that hold cores, ascending (may have gaps: Lassen has 0 and 8). */
size_t jz_topo_numa_count(const struct jz_topo *t);
int jz_topo_numa_at(const struct jz_topo *t, size_t i);
/* A short description of the machine ("2 packages, 8 NUMA nodes, 112 cores, 224 PUs, 4 GPUs").
 * Returns JZ_ERANGE when buf is too small (it is still NUL-terminated). */
int jz_topo_describe(const struct jz_topo *t, char *buf, size_t len);

/* How close GPUs i and j are; JZ_TOPO_LINK_SAME_DEVICE when i == j. */
enum jz_topo_link jz_topo_gpu_link(const struct jz_topo *t, size_t i, size_t j);
/* A finer, totally ordered distance: link class * 16 + hops inside that class (for two GPUs
 * behind nested PCIe switches, fewer bridges up to the common one is closer). */
unsigned jz_topo_gpu_distance(const struct jz_topo *t, size_t i, size_t j);
/* The whole distance matrix, row-major gpu_count x gpu_count, values as jz_topo_gpu_distance;
 * owned by t. For hot loops (placement) that cannot afford a call per pair. NULL if not
 * finished. */
const unsigned char *jz_topo_distance_matrix(const struct jz_topo *t);
/* A static English name for a link class ("same PCIe switch"). */
const char *jz_topo_link_name(enum jz_topo_link link);

/* --- Building a topology: used by the hwloc adapter, the simulator and tests. Add cores and GPUs
 * in any order, then call jz_topo_finish once; it sorts GPUs by PCI bus id and subdevice,
 * computes distances and freezes the model. A failed call leaves the builder unchanged. --- */

/* Creates an empty topology; destroy with jz_topo_destroy. */
int jz_topo_create(struct jz_topo **out, struct jz_error *err);
/* Adds a core with its hardware threads (pus is copied). */
int jz_topo_add_core(struct jz_topo *t, int numa_os, int package, const int *pus, size_t pu_count,
                     struct jz_error *err);
/* Adds a GPU. index and local_cores in desc are ignored; the OS processor numbers in local_pus
 * (copied) say which cores are local: a core is local when all its PUs are listed. An empty
 * list means "local to every core". */
int jz_topo_add_gpu(struct jz_topo *t, const struct jz_topo_gpu *desc, const int *local_pus,
                    size_t local_pu_count, struct jz_error *err);
/* Declares a direct NVLink/XGMI connection between GPUs a and b, numbered in the order they
 * were added. */
int jz_topo_add_link(struct jz_topo *t, size_t a, size_t b, struct jz_error *err);
/* Sorts, computes distances and freezes. Afterwards the add functions return JZ_EINVAL. */
int jz_topo_finish(struct jz_topo *t, struct jz_error *err);
/* True once jz_topo_finish succeeded. */
bool jz_topo_is_finished(const struct jz_topo *t);

#endif
