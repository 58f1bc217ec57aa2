/* Test driver for `jazari place`: runs clients/place.c's jz_cli_place without the rest of the CLI.
 */
int jz_cli_place(int argc, char **argv);

int main(int argc, char **argv)
{
    /* The CLI calls it with argv[0] == "place", as here after dropping the program name. */
    return jz_cli_place(argc - 1, argv + 1);
}
