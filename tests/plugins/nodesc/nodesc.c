/* Test plugin "nodesc": a shared object without the jazari_plugin symbol. */
#include <jazari/plugin.h>

JZ_PLUGIN_EXPORT int nodesc_answer(void);
JZ_PLUGIN_EXPORT int nodesc_answer(void)
{
    return 42;
}
