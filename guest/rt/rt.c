/* mmuemu guest runtime helpers. Built with -fno-tree-loop-distribute-patterns
 * so that the loops below are not turned back into calls to themselves. */
#include "rt.h"

char **environ;

size_t strlen(const char *s)
{
    const char *p = s;
    while (*p)
        p++;
    return (size_t)(p - s);
}

void *memcpy(void *dst, const void *src, size_t n)
{
    u8 *d = dst;
    const u8 *s = src;
    while (n--)
        *d++ = *s++;
    return dst;
}

void *memmove(void *dst, const void *src, size_t n)
{
    u8 *d = dst;
    const u8 *s = src;
    if (d <= s || d >= s + n)
        return memcpy(dst, src, n);
    while (n--)
        d[n] = s[n];
    return dst;
}

void *memset(void *dst, int c, size_t n)
{
    u8 *d = dst;
    while (n--)
        *d++ = (u8)c;
    return dst;
}

int memcmp(const void *a, const void *b, size_t n)
{
    const u8 *x = a, *y = b;
    for (; n; n--, x++, y++)
        if (*x != *y)
            return *x - *y;
    return 0;
}

int strcmp(const char *a, const char *b)
{
    while (*a && *a == *b)
        a++, b++;
    return (u8)*a - (u8)*b;
}

int strncmp(const char *a, const char *b, size_t n)
{
    for (; n; n--, a++, b++) {
        if (*a != *b)
            return (u8)*a - (u8)*b;
        if (!*a)
            break;
    }
    return 0;
}

int parse_u64(const char *s, u64 *out)
{
    u64 v = 0;
    unsigned base = 10;
    if (!s || !*s)
        return -1;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        s += 2;
        if (!*s)
            return -1;
    }
    for (; *s; s++) {
        unsigned d;
        if (*s >= '0' && *s <= '9')
            d = (unsigned)(*s - '0');
        else if (base == 16 && *s >= 'a' && *s <= 'f')
            d = (unsigned)(*s - 'a' + 10);
        else if (base == 16 && *s >= 'A' && *s <= 'F')
            d = (unsigned)(*s - 'A' + 10);
        else
            return -1;
        v = v * base + d;
    }
    *out = v;
    return 0;
}

u64 arg_u64(int argc, char **argv, int idx, u64 dflt)
{
    u64 v;
    if (idx >= argc)
        return dflt;
    if (parse_u64(argv[idx], &v) < 0) {
        eprintf("%s: bad number '%s'\n", argv[0], argv[idx]);
        sys_exit_group(2);
    }
    return v;
}

int atoi(const char *s)
{
    int neg = 0, v = 0;
    while (*s == ' ' || *s == '\t')
        s++;
    if (*s == '-' || *s == '+')
        neg = *s++ == '-';
    while (*s >= '0' && *s <= '9')
        v = v * 10 + (*s++ - '0');
    return neg ? -v : v;
}

const char *getenv(const char *name)
{
    size_t n = strlen(name);
    for (char **e = environ; e && *e; e++)
        if (strncmp(*e, name, n) == 0 && (*e)[n] == '=')
            return *e + n + 1;
    return NULL;
}

int write_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n) {
        long r = sys_write(fd, p, n);
        if (r <= 0)
            return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

/* --- formatting ------------------------------------------------------ */

struct outbuf {
    int fd, err;
    size_t len;
    char buf[256];
};

static void ob_flush(struct outbuf *o)
{
    if (o->len && write_all(o->fd, o->buf, o->len) < 0)
        o->err = 1;
    o->len = 0;
}

static void ob_putc(struct outbuf *o, char c)
{
    if (o->len == sizeof(o->buf))
        ob_flush(o);
    o->buf[o->len++] = c;
}

static void ob_puts(struct outbuf *o, const char *s)
{
    while (*s)
        ob_putc(o, *s++);
}

static void ob_pad(struct outbuf *o, int n, char pad)
{
    for (; n > 0; n--)
        ob_putc(o, pad);
}

/* String padded to |width| (width < 0: left-justified). */
static void ob_field(struct outbuf *o, const char *s, int width)
{
    int n = (int)strlen(s);
    if (width > 0)
        ob_pad(o, width - n, ' ');
    ob_puts(o, s);
    if (width < 0)
        ob_pad(o, -width - n, ' ');
}

/* Number in base 10 or 16 padded to |width| with pad (width < 0: left). */
static void ob_num(struct outbuf *o, u64 v, unsigned base, int width,
                   char pad, int neg)
{
    char tmp[24];
    int n = sizeof(tmp);
    tmp[--n] = '\0';
    do {
        unsigned d = (unsigned)(v % base);
        tmp[--n] = (char)(d < 10 ? '0' + d : 'a' + d - 10);
        v /= base;
    } while (v);
    if (pad == '0' && width > 0) {
        if (neg)
            ob_putc(o, '-');
        ob_pad(o, width - ((int)sizeof(tmp) - 1 - n) - neg, '0');
        ob_puts(o, tmp + n);
        return;
    }
    if (neg)
        tmp[--n] = '-';
    ob_field(o, tmp + n, width);
}

int vfdprintf(int fd, const char *fmt, va_list ap)
{
    struct outbuf o;
    o.fd = fd;
    o.err = 0;
    o.len = 0;
    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            ob_putc(&o, *fmt);
            continue;
        }
        char pad = ' ';
        int width = 0, lng = 0, left = 0;
        fmt++;
        for (;; fmt++) {
            if (*fmt == '0')
                pad = '0';
            else if (*fmt == '-')
                left = 1;
            else
                break;
        }
        while (*fmt >= '0' && *fmt <= '9')
            width = width * 10 + (*fmt++ - '0');
        if (left) {
            width = -width;
            pad = ' ';
        }
        while (*fmt == 'l' || *fmt == 'z') {
            lng = 1;
            fmt++;
        }
        switch (*fmt) {
        case 'd':
        case 'i': {
            i64 v = lng ? va_arg(ap, long) : va_arg(ap, int);
            ob_num(&o, v < 0 ? -(u64)v : (u64)v, 10, width, pad, v < 0);
            break;
        }
        case 'u':
        case 'x': {
            u64 v = lng ? va_arg(ap, unsigned long) : va_arg(ap, unsigned);
            ob_num(&o, v, *fmt == 'u' ? 10 : 16, width, pad, 0);
            break;
        }
        case 'p':
            ob_puts(&o, "0x");
            ob_num(&o, (u64)(uintptr_t)va_arg(ap, void *), 16, width, pad, 0);
            break;
        case 's': {
            const char *s = va_arg(ap, const char *);
            ob_field(&o, s ? s : "(null)", width);
            break;
        }
        case 'c':
            ob_putc(&o, (char)va_arg(ap, int));
            break;
        case '%':
            ob_putc(&o, '%');
            break;
        case '\0':
            fmt--;              /* trailing '%': stop at the terminator */
            break;
        default:
            ob_putc(&o, '%');
            ob_putc(&o, *fmt);
            break;
        }
    }
    ob_flush(&o);
    return o.err ? -1 : 0;
}

int fdprintf(int fd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = vfdprintf(fd, fmt, ap);
    va_end(ap);
    return r;
}

int print_str(int fd, const char *s) { return write_all(fd, s, strlen(s)); }
int print_u64(int fd, u64 v)         { return fdprintf(fd, "%lu", (unsigned long)v); }
int print_i64(int fd, i64 v)         { return fdprintf(fd, "%ld", (long)v); }
int print_hex(int fd, u64 v)         { return fdprintf(fd, "0x%lx", (unsigned long)v); }

void die(const char *msg)
{
    print_str(STDERR_FILENO, msg);
    print_str(STDERR_FILENO, "\n");
    sys_exit_group(1);
}

void die_errno(const char *what, long ret)
{
    eprintf("%s: error %ld\n", what, -ret);
    sys_exit_group(1);
}
