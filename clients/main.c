/* Entry point of the `jazari` command-line client; everything else is in the jz_cli library so
 * that unit tests can drive it. `place` runs the program jazari-place from this program's own
 * folder: it needs the scheduler library and hwloc, which every other command would otherwise
 * load at each start. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "clients/cli.h"
#include "common/strutil.h"

#ifdef JZ_CLI_HAVE_PLACE
static int cmd_place(struct jz_cli *cli, int argc, char **argv)
{
    char dir[4096], path[4200];
    if (jz_exe_dir(dir, sizeof dir) != 0) {
        jz_cli_errorf(cli, "place: cannot find this program's folder");
        return JZ_CLI_EXIT_FAIL;
    }
    snprintf(path, sizeof path, "%s/jazari-place", dir);
    fflush(NULL);
    argv[0] = path; /* argv[argc] is NULL: the rest are place's own arguments */
    execv(path, argv);
    jz_cli_errorf(cli, "place: cannot run %s: %s", path, strerror(errno));
    return JZ_CLI_EXIT_FAIL;
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
