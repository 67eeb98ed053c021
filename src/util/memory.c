/* How much memory the machine can still give this process (memory policies: null-text
 * inversion keeps its activations only when they fit). */
#include "asam/util.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

size_t asam_mem_available(void) {
    /* Linux: MemAvailable counts reclaimable page cache too, which free memory alone misses */
    FILE *f = fopen("/proc/meminfo", "r");
    if (f) {
        char line[128];
        unsigned long long kb = 0;
        int found = 0;
        while (!found && fgets(line, sizeof line, f))
            found = sscanf(line, "MemAvailable: %llu kB", &kb) == 1;
        fclose(f);
        if (found) return (size_t)kb * 1024;
    }
    long pages = sysconf(_SC_AVPHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    return pages > 0 && page > 0 ? (size_t)pages * (size_t)page : 0;
}
