#include <pthread.h>
static void *spin(void *a) { (void)a; for (volatile unsigned long x = 0;; x++) {} return NULL; }
int main(void) {
    for (int i = 0; i < 8; i++) { pthread_t t; pthread_create(&t, NULL, spin, NULL); }
    spin(NULL);
}
