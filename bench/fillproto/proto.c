/*
 * A throwaway-style native fill hook for bench/fillproto/proto.py: walk
 * 4-level tables (x86-64 or arm64 stage-1 format, 4 KiB granule) held in the
 * emulated RAM, and fill Unicorn's soft-TLB entry. No counters beyond two,
 * no A/D bits (the prototype's tables are built with A/D already set), one
 * tunable: which permissions to return.
 *
 * Built by proto.py with the host C compiler into a temporary directory.
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    uint64_t paddr;
    int perms;
} uc_tlb_entry;

struct proto_state {
    uint8_t *phys;
    uint64_t root;
    uint32_t arch;       /* 0 x86-64, 1 arm64 */
    uint32_t force_rwx;  /* 1: return R|W|X for every valid page */
    uint64_t fills;
    uint64_t blocks;
};

#define ADDR_MASK 0x0000FFFFFFFFF000ull

static inline uint64_t rd(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

bool proto_fill(void *uc, uint64_t va, int type, uc_tlb_entry *e, void *user)
{
    struct proto_state *s = user;
    uint64_t t = s->root;
    uint64_t pte = 0;
    (void)uc;
    s->fills++;
    for (int lvl = 0; lvl < 4; lvl++) {
        pte = rd(s->phys + t + 8 * ((va >> (39 - 9 * lvl)) & 0x1FF));
        if (s->arch == 0 ? !(pte & 1) : (pte & 3) != 3)
            return false;
        t = pte & ADDR_MASK;
    }
    int p;
    if (s->arch == 0) {   /* x86-64: P RW US ... NX */
        p = 1 | ((pte & 2) ? 2 : 0) | ((pte >> 63) ? 0 : 4);
    } else {              /* arm64: AP[2] = read-only, UXN */
        p = 1 | ((pte & (1ull << 7)) ? 0 : 2) | ((pte & (1ull << 54)) ? 0 : 4);
    }
    if (s->force_rwx)
        p = 7;
    if ((type == 17 && !(p & 2)) || (type == 18 && !(p & 4)))
        return false;
    e->paddr = t;
    e->perms = p;
    return true;
}

void proto_block(void *uc, uint64_t address, uint32_t size, void *user)
{
    struct proto_state *s = user;
    (void)uc;
    (void)address;
    (void)size;
    s->blocks++;
}

/* UC_HOOK_MEM_FETCH_PROT: with guest RAM mapped R|W only, let the translator
 * read code anyway (its code loads are the only ones that check the region's
 * permissions). */
bool proto_fetch_prot(void *uc, int type, uint64_t address, int size, int64_t value,
                      void *user)
{
    (void)uc; (void)type; (void)address; (void)size; (void)value; (void)user;
    return true;
}
