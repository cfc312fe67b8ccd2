/* Stand-in for a v0.30+ `ollama` binary (no real one can be had here: its Go dependencies come only from
   the Go module proxy). What vgpu-fix reads or runs of it: the version string that `-X
   version.Version=` embeds (a Go string header: pointer, length, over bytes that run on into the next
   string, as in a stripped Go binary), and `ollama runner --ollama-engine`, which v0.30+ rejects
   (v0.32.15 runner/runner.go:20; cobra prints `Error: <text>` and exits 1, main.go:12). `ollama serve`
   runs the program STANDIN_SERVE names (the namespace tier's logger of Ollama's real discovery lines). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef VERSION
#define VERSION "0.32.15"
#endif
struct gostring { const char *p; long n; };
static const char strings[] = VERSION "unknown runner engine, expected --mlx-engine";
struct gostring Version = { strings, sizeof VERSION - 1 };

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "runner") == 0) {
        fprintf(stderr, "Error: %s\n", strings + Version.n);
        return 1;
    }
    if (argc > 1 && strcmp(argv[1], "-v") == 0) {
        printf("Warning: could not connect to a running Ollama instance\nWarning: client version is %.*s\n",
               (int)Version.n, Version.p);
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "serve") == 0 && getenv("STANDIN_SERVE")) {
        execv(getenv("STANDIN_SERVE"), argv);
        perror("stand-in ollama: STANDIN_SERVE");
        return 127;
    }
    fprintf(stderr, "Error: stand-in ollama: only `runner`, `-v` and (with STANDIN_SERVE) `serve`\n");
    return 1;
}
