/* The accuracy target of the train plugin: the full Fashion-MNIST, hidden layers 256,128, Adam
 * with the default cosine schedule, 20 epochs; the test accuracy must reach 0.885 (the published
 * MLP 256-128-100 reaches 0.883). Labelled `slow`: about a minute on 2 cores. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runhost.h"

static void test_fashion_mnist_accuracy(void **state)
{
    char dir[] = "/tmp/jz-train-acc-XXXXXX";
    assert_non_null(mkdtemp(dir));
    static struct jz_runhost h;
    assert_int_equal(jz_runhost_init(&h, JZ_TRAIN_PLUGIN, dir), 0);
    h.quiet = true;
    jz_runhost_set(&h, "dataset", JZ_FASHION_MNIST);
    jz_runhost_set(&h, "layers", "256,128");
    jz_runhost_set(&h, "epochs", "20");
    int rc = jz_runhost_run(&h);
    if (rc != 0)
        fail_msg("train failed: %s", h.error);
    double acc = jz_runhost_metric(&h, "test_accuracy");
    double best_epoch_s = INFINITY;
    for (int e = 1; e <= 20; e++)
        best_epoch_s = fmin(best_epoch_s, jz_runhost_metric_at(&h, "epoch_s", e));
    printf("fashion-mnist 256,128 x 20 epochs: test_accuracy %.4f, fastest epoch %.2f s\n", acc,
           best_epoch_s);
    if (!(acc >= 0.885))
        fail_msg("test accuracy %.4f is below the 0.885 target", acc);
    jz_runhost_destroy(&h);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    if (access(JZ_FASHION_MNIST "/train-images-idx3-ubyte.gz", R_OK) != 0) {
        fprintf(stderr, "skipped: no Fashion-MNIST at %s\n", JZ_FASHION_MNIST);
        return 77;
    }
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_fashion_mnist_accuracy)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
