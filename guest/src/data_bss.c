/* data_bss: a non-empty .data (file-backed, private, writable) followed by a
 * multi-page .bss. The loader must map .data from the file, zero the tail of
 * the last file-backed page past p_filesz, and provide anonymous zero pages
 * for the rest of p_memsz. Checks every byte, then writes to every page. */
#include "rt.h"

#define DATA_LEN 5000
#define BSS_LEN  (3 * PAGE_SIZE + 100)

static u8 data_arr[DATA_LEN] = { [0 ... DATA_LEN - 1] = 0xa5, [0] = 1, [DATA_LEN - 1] = 2 };
static u8 bss_arr[BSS_LEN];

int main(int argc, char **argv, char **envp)
{
    (void)argc, (void)argv, (void)envp;
    volatile u8 *d = data_arr, *b = bss_arr;
    u64 sum = 0;

    for (u64 i = 0; i < DATA_LEN; i++) {
        u8 want = i == 0 ? 1 : i == DATA_LEN - 1 ? 2 : 0xa5;
        if (d[i] != want) {
            eprintf("data_bss: data[%lu]=%u want %u\n", (unsigned long)i, d[i], want);
            return 1;
        }
        sum += d[i];
    }
    for (u64 i = 0; i < BSS_LEN; i++) {
        if (b[i] != 0) {
            eprintf("data_bss: bss[%lu]=%u not zero\n", (unsigned long)i, b[i]);
            return 1;
        }
    }
    for (u64 i = 0; i < DATA_LEN; i += 512)
        d[i] = (u8)(d[i] + i / 512);
    for (u64 i = 0; i < BSS_LEN; i += 512)
        b[i] = (u8)(i / 512 + 1);
    for (u64 i = 0; i < DATA_LEN; i += 512)
        sum += d[i];
    for (u64 i = 0; i < BSS_LEN; i += 512)
        sum += b[i];
    printf("data_bss: data=%d bss=%lu checksum=%lu\n", DATA_LEN,
           (unsigned long)BSS_LEN, (unsigned long)sum);
    return 0;
}
