/* NUL bytes, invalid UTF-8 and control characters on stdout and stderr: the daemon must still
 * answer with valid JSON (outcome 12: stderr is not empty). */
int main(void) {
    static const char junk[] = "a\0b\xff\xfe\xc3\x28\xed\xa0\x80\x1b[2J\r\n\"\\</script>";
    fwrite(junk, 1, sizeof junk, stdout);
    fwrite(junk, 1, sizeof junk, stderr);
    for (int i = 0; i < 256; i++) { putchar(i); fputc(i, stderr); }
    puts("\nDONE");
}
