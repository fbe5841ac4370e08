/* The compiler reads an endless file: the compile step's own limits end it (outcome 11 with a
 * reason in cmpinfo). */
#include "/dev/zero"
int main(void) { return 0; }
