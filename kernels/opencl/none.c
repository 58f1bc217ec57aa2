/* Stands in for the OpenCL backend when the build has no OpenCL: the backend is absent. */
#include "../internal.h"

const struct jzk_ops *jzk_opencl_ops(void)
{
    return NULL;
}
