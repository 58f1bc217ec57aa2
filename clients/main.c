/* Entry point of the `jazari` command-line client; everything else is in the jz_cli library so
 * that unit tests can drive it. `place` is linked here because it needs the scheduler library. */
#include "clients/cli.h"

#ifdef JZ_CLI_HAVE_PLACE
int jz_cli_place(int argc, char **argv); /* clients/place.c */

static int cmd_place(struct jz_cli *cli, int argc, char **argv)
{
    return jz_cli_place(argc, argv);
}
#endif

static const struct jz_cli_command extra[] = {
#ifdef JZ_CLI_HAVE_PLACE
    {"place", cmd_place, "show where the scheduler would place a job on a node (operators)",
     "Usage: jazari place --help\n"},
#endif
    {NULL, NULL, NULL, NULL},
};

int main(int argc, char **argv)
{
    return jz_cli_main(argc, argv, extra);
}
