"""x86-64 4-level paging (PML4 → PDPT → PD → PT), as in the Intel SDM vol. 3A ch. 4.5."""
