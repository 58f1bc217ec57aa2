/* jazari-place: `jazari place` as a program of its own (clients/place.c). It runs the
 * scheduler's placement code, which links hwloc (and through it libudev and libm); the `jazari`
 * CLI execs this program for `place` instead of linking them, so that every other command starts
 * without loading them (docs/design-notes.md). */
int jz_cli_place(int argc, char **argv); /* clients/place.c */

int main(int argc, char **argv)
{
    static char name[] = "place";
    argv[0] = name; /* jz_cli_place reads its arguments after the command's name */
    return jz_cli_place(argc, argv);
}
