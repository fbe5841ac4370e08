#include <pthread.h>
static void *sleeper(void *a) { (void)a; for (;;) pause(); }
int main(void) {
    for (;;) { pthread_t t; pthread_create(&t, NULL, sleeper, NULL); }
}
