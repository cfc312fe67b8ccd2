/* A hostile image's library: its constructor runs at load time, says which uid ran it, and tries to
   write a file outside the root (the path comes from VGPU_PLANTED_TARGET). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

__attribute__((constructor)) static void planted(void) {
    const char *target = getenv("VGPU_PLANTED_TARGET");
    int err = 0;
    if (target) {
        int fd = open(target, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0) {
            err = errno;
        } else {
            dprintf(fd, "written by uid %d\n", (int)getuid());
            close(fd);
        }
    }
    fprintf(stderr, "planted: uid=%d write=%s\n", (int)getuid(), err ? strerror(err) : "ok");
}
