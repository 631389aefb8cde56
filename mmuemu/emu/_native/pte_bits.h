/*
 * pte_bits.h - the page-table entry bits and the leaf rules shared by the
 * fill-path walker (fastpath.c) and the exact TLB model (exact.c).
 *
 * They are the C form of mmuemu/hw/x86_64/pte.py and mmuemu/hw/arm64/pte.py
 * (hw_update, leaf_perms, fill_writable); both files' differential tests hold
 * them to the Python reference.
 */
#ifndef MMUEMU_PTE_BITS_H
#define MMUEMU_PTE_BITS_H

#include <stdint.h>
#include <string.h>

enum { UC_MEM_READ = 16, UC_MEM_WRITE = 17, UC_MEM_FETCH = 18 };
enum { UC_PROT_READ = 1, UC_PROT_WRITE = 2, UC_PROT_EXEC = 4 };

/* Output-address bits 47:12, as mmuemu/hw/pte.py:ADDR_MASK (arm64 keeps DBM
 * in bit 51; emulated RAM stays far below 2**48). native.py checks the two
 * agree through mmuemu_addr_mask(). */
#define ADDR_MASK 0x0000FFFFFFFFF000ull

/* x86-64 (Intel SDM vol. 3A table 4-19; mmuemu/hw/x86_64/pte.py) */
#define X86_P   (1ull << 0)
#define X86_RW  (1ull << 1)
#define X86_US  (1ull << 2)
#define X86_A   (1ull << 5)
#define X86_D   (1ull << 6)
#define X86_G   (1ull << 8)
#define X86_NX  (1ull << 63)
#define X86_TASK_SIZE 0x00007FFFFFFFF000ull

/* arm64 stage 1, 4 KiB granule (Arm ARM D8.3; mmuemu/hw/arm64/pte.py) */
#define A64_VALID  (1ull << 0)
#define A64_USER   (1ull << 6)   /* AP[1] */
#define A64_RDONLY (1ull << 7)   /* AP[2] */
#define A64_AF     (1ull << 10)
#define A64_NG     (1ull << 11)
#define A64_DBM    (1ull << 51)
#define A64_UXN    (1ull << 54)
#define A64_TABLE  3ull
#define A64_TASK_SIZE (1ull << 48)

static inline uint64_t rd64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;   /* little-endian host, little-endian guest tables */
}

static inline void wr64(uint8_t *p, uint64_t v)
{
    memcpy(p, &v, 8);
}

static inline unsigned pt_index(uint64_t va, int level)
{
    return (unsigned)((va >> (39 - 9 * level)) & 0x1FF);
}

/* The leaf rules: hw_update(), leaf_perms() and fill_writable() of the
 * PteFormat classes. Return 0 when the access is not allowed, else 1 with
 * *new_pte (the entry the hardware writes back) and *perms (before the
 * upper-level NX/RW restrictions). */
static inline __attribute__((always_inline))
int x86_leaf(uint64_t pte, int access, uint64_t *new_pte, uint32_t *perms)
{
    if (!(pte & X86_P) || !(pte & X86_US))
        return 0;
    uint64_t n;
    if (access == UC_MEM_WRITE) {
        if (!(pte & X86_RW))
            return 0;
        n = pte | X86_A | X86_D;
    } else {
        if (access == UC_MEM_FETCH && (pte & X86_NX))
            return 0;
        n = pte | X86_A;
    }
    uint32_t p = UC_PROT_READ;
    if (!(n & X86_NX))
        p |= UC_PROT_EXEC;
    if ((n & X86_RW) && (n & X86_D))
        p |= UC_PROT_WRITE;
    *new_pte = n;
    *perms = p;
    return 1;
}

static inline __attribute__((always_inline))
int a64_leaf(uint64_t pte, int access, uint64_t *new_pte, uint32_t *perms)
{
    if (!(pte & A64_VALID))
        return 0;
    int user = (pte & A64_USER) != 0;
    int exec = !(pte & A64_UXN);
    uint64_t n;
    if (access == UC_MEM_WRITE) {
        int writable = user && (!(pte & A64_RDONLY) || (pte & A64_DBM));
        if (!writable)
            return 0;
        n = (pte | A64_AF) & ~A64_RDONLY;
    } else {
        if (access == UC_MEM_FETCH ? !exec : !user)
            return 0;
        n = pte | A64_AF;
    }
    uint32_t p = 0;
    if (user)
        p |= UC_PROT_READ;
    if (exec)
        p |= UC_PROT_EXEC;
    if ((n & A64_USER) && !(n & A64_RDONLY))
        p |= UC_PROT_WRITE;
    *new_pte = n;
    *perms = p;
    return 1;
}

#endif /* MMUEMU_PTE_BITS_H */
