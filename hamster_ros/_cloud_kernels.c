/* PointCloud2 <-> numpy kernels for the common layout (native-endian float32 x, y, z, optional packed rgb).
 *
 * One fused pass per cloud instead of numpy's several (gather, finite test, compaction): the conversions
 * run on every camera frame, and numpy's passes cost several memory copies (README, "Reliability and timing",
 * has the numbers). The GIL is released during the loop so the control thread can run.
 * hamster_ros/conversions.py validates the message and calls these;
 * the checks here only keep a wrong call from reading or writing out of bounds.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <tmmintrin.h>
#define HAVE_X86_SIMD 1  /* SSE2 is part of x86-64; SSSE3 is checked at run time */
#endif

/* Exponent bits all set: inf or NaN. An integer test, so the loops stay branch-free. */
static inline uint32_t finite_bits(uint32_t bits) { return (bits & 0x7f800000u) != 0x7f800000u; }

static int check_length(const char *what, Py_ssize_t have, Py_ssize_t need) {
    if (have < need) {
        PyErr_Format(PyExc_ValueError, "%s holds %zd bytes, needs %zd", what, have, need);
        return -1;
    }
    return 0;
}

static int get_optional_writable(PyObject *object, Py_buffer *view) {
    if (object == Py_None) {
        view->buf = NULL;
        view->len = 0;
        view->obj = NULL;
        return 0;
    }
    return PyObject_GetBuffer(object, view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS);
}

/* Every record is written at the next free slot and kept only if finite: branch-free compaction. */
static Py_ssize_t gather_scalar(const uint8_t *record, Py_ssize_t count, Py_ssize_t point_step,
                                const Py_ssize_t xyz_offsets[3], Py_ssize_t offset_rgb, const Py_ssize_t rgb_bytes[3],
                                uint32_t *point_out, uint8_t *color_out) {
    Py_ssize_t kept = 0;
    for (Py_ssize_t index = 0; index < count; ++index, record += point_step) {
        uint32_t xyz[3];
        for (int axis = 0; axis < 3; ++axis) {
            memcpy(&xyz[axis], record + xyz_offsets[axis], 4);  /* memcpy: records need not be aligned */
        }
        memcpy(point_out + 3 * kept, xyz, 12);
        if (offset_rgb >= 0) {
            const uint8_t *word = record + offset_rgb;
            uint8_t *rgb = color_out + 3 * kept;
            rgb[0] = word[rgb_bytes[0]];
            rgb[1] = word[rgb_bytes[1]];
            rgb[2] = word[rgb_bytes[2]];
        }
        kept += finite_bits(xyz[0]) & finite_bits(xyz[1]) & finite_bits(xyz[2]);
    }
    return kept;
}

#ifdef HAVE_X86_SIMD
/* x, y, z adjacent (every driver's layout), colour words little-endian: one 16-byte load and store per point,
 * the finite test as v - v == 0. The stores run 4 bytes (points) and 1 byte (colours) past the slot they
 * fill, into the next one, so the last record goes through the scalar loop. */
static Py_ssize_t gather_adjacent_xyz_sse2(const uint8_t *record, Py_ssize_t count, Py_ssize_t point_step,
                                           Py_ssize_t offset_x, Py_ssize_t offset_rgb, uint32_t *point_out,
                                           uint8_t *color_out) {
    Py_ssize_t kept = 0, index = 0;
    for (; index + 1 < count; ++index, record += point_step) {
        __m128 xyz = _mm_castsi128_ps(_mm_loadu_si128((const __m128i *)(record + offset_x)));
        __m128i zero_if_finite = _mm_castps_si128(_mm_sub_ps(xyz, xyz));
        _mm_storeu_si128((__m128i *)(point_out + 3 * kept), _mm_castps_si128(xyz));
        if (offset_rgb >= 0) {
            uint32_t word;  /* bytes B, G, R, ? -> R, G, B, 0 */
            memcpy(&word, record + offset_rgb, 4);
            word = __builtin_bswap32(word) >> 8;
            memcpy(color_out + 3 * kept, &word, 4);
        }
        int finite_lanes = _mm_movemask_epi8(_mm_cmpeq_epi32(zero_if_finite, _mm_setzero_si128()));
        kept += (finite_lanes & 0xFFF) == 0xFFF;  /* lanes x, y, z; the fourth belongs to the next field */
    }
    const Py_ssize_t xyz_offsets[3] = {offset_x, offset_x + 4, offset_x + 8};
    const Py_ssize_t little_endian_rgb[3] = {2, 1, 0};
    return kept + gather_scalar(record, count - index, point_step, xyz_offsets, offset_rgb, little_endian_rgb,
                                point_out + 3 * kept, color_out == NULL ? NULL : color_out + 3 * kept);
}
#endif

PyDoc_STRVAR(gather_points_doc,
"gather_points(src, count, point_step, offset_x, offset_y, offset_z, offset_rgb, rgb_big_endian, points_out,\n"
"              colors_out) -> kept\n\n"
"Copies the finite (x, y, z) float32 triples of `count` records of `point_step` bytes into points_out\n"
"(float32 (N, 3)) and, with offset_rgb >= 0 and colors_out not None, the R, G, B bytes of the packed\n"
"0x??RRGGBB word into colors_out (uint8 (N, 3)). Returns how many points were kept.");

static PyObject *gather_points(PyObject *self, PyObject *args) {
    Py_buffer src, points;
    Py_ssize_t count, point_step, offset_x, offset_y, offset_z, offset_rgb;
    int rgb_big_endian;
    PyObject *colors_object;
    if (!PyArg_ParseTuple(args, "y*nnnnnnpw*O", &src, &count, &point_step, &offset_x, &offset_y, &offset_z,
                          &offset_rgb, &rgb_big_endian, &points, &colors_object)) {
        return NULL;
    }
    Py_buffer colors;
    if (get_optional_writable(colors_object, &colors) < 0) {
        PyBuffer_Release(&src);
        PyBuffer_Release(&points);
        return NULL;
    }
    int with_colors = offset_rgb >= 0 && colors.buf != NULL;
    int bad = count < 0 || point_step <= 0 || offset_x < 0 || offset_y < 0 || offset_z < 0
        || offset_x + 4 > point_step || offset_y + 4 > point_step || offset_z + 4 > point_step
        || (offset_rgb >= 0 && offset_rgb + 4 > point_step);
    if (bad) {
        PyErr_SetString(PyExc_ValueError, "gather_points: a field does not fit in point_step");
    }
    if (bad || check_length("src", src.len, count * point_step) < 0
        || check_length("points_out", points.len, count * 12) < 0
        || (with_colors && check_length("colors_out", colors.len, count * 3) < 0)) {
        PyBuffer_Release(&src);
        PyBuffer_Release(&points);
        if (colors.obj) PyBuffer_Release(&colors);
        return NULL;
    }
    /* Byte offsets of R, G, B inside the packed word. */
    Py_ssize_t red = rgb_big_endian ? 1 : 2, green = rgb_big_endian ? 2 : 1, blue = rgb_big_endian ? 3 : 0;
    Py_ssize_t kept;
    Py_BEGIN_ALLOW_THREADS
    const uint8_t *record = (const uint8_t *)src.buf;
    uint32_t *point_out = (uint32_t *)points.buf;
    uint8_t *color_out = (uint8_t *)colors.buf;
    const Py_ssize_t xyz_offsets[3] = {offset_x, offset_y, offset_z};
    const Py_ssize_t rgb_bytes[3] = {red, green, blue};
#ifdef HAVE_X86_SIMD
    if (offset_y == offset_x + 4 && offset_z == offset_x + 8 && (!with_colors || !rgb_big_endian)) {
        kept = gather_adjacent_xyz_sse2(record, count, point_step, offset_x, with_colors ? offset_rgb : -1,
                                        point_out, color_out);
    } else
#endif
    kept = gather_scalar(record, count, point_step, xyz_offsets, with_colors ? offset_rgb : -1, rgb_bytes,
                         point_out, color_out);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&src);
    PyBuffer_Release(&points);
    if (colors.obj) PyBuffer_Release(&colors);
    return PyLong_FromSsize_t(kept);
}

static uint32_t pack_xyz(const uint32_t *point, uint32_t *record, Py_ssize_t count) {
    uint32_t all_finite = 1;
    for (Py_ssize_t index = 0; index < 3 * count; ++index) {
        all_finite &= finite_bits(point[index]);
        record[index] = point[index];
    }
    return all_finite;
}

static uint32_t pack_with_colors_scalar(const uint32_t *point, const uint8_t *rgb, uint32_t *record,
                                        Py_ssize_t count) {
    uint32_t all_finite = 1;
    for (Py_ssize_t index = 0; index < count; ++index, point += 3, rgb += 3, record += 4) {
        all_finite &= finite_bits(point[0]) & finite_bits(point[1]) & finite_bits(point[2]);
        record[0] = point[0];
        record[1] = point[1];
        record[2] = point[2];
        record[3] = ((uint32_t)rgb[0] << 16) | ((uint32_t)rgb[1] << 8) | (uint32_t)rgb[2];
    }
    return all_finite;
}

#ifdef HAVE_X86_SIMD
/* Four points per iteration: three 16-byte loads of x, y, z, one of their 12 colour bytes, byte shuffles
 * into four 16-byte records. Several times faster than the scalar loop, which the compiler does not
 * vectorize (README, "Reliability and timing"). */
__attribute__((target("ssse3")))
static uint32_t pack_with_colors_ssse3(const uint32_t *point, const uint8_t *rgb, uint32_t *record,
                                       Py_ssize_t count) {
    const __m128i exponent = _mm_set1_epi32(0x7f800000);
    const __m128i first_three = _mm_set_epi32(0, -1, -1, -1);
    /* Colour k's R, G, B bytes -> lane 3 as the little-endian word 0x00RRGGBB (bytes B, G, R, 0). */
    const char zero = (char)0x80;
    const __m128i word[4] = {
        _mm_setr_epi8(zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, 2, 1, 0, zero),
        _mm_setr_epi8(zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, 5, 4, 3, zero),
        _mm_setr_epi8(zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, 8, 7, 6, zero),
        _mm_setr_epi8(zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, 11, 10, 9, zero),
    };
    __m128i non_finite = _mm_setzero_si128();
    Py_ssize_t index = 0;
    /* index + 6 <= count: the colour load reads 16 bytes, 4 past this iteration's 12. */
    for (; index + 6 <= count; index += 4, point += 12, rgb += 12, record += 16) {
        __m128i a = _mm_loadu_si128((const __m128i *)point);        /* x0 y0 z0 x1 */
        __m128i b = _mm_loadu_si128((const __m128i *)(point + 4));  /* y1 z1 x2 y2 */
        __m128i c = _mm_loadu_si128((const __m128i *)(point + 8));  /* z2 x3 y3 z3 */
        __m128i colors = _mm_loadu_si128((const __m128i *)rgb);
        non_finite = _mm_or_si128(non_finite, _mm_cmpeq_epi32(_mm_and_si128(a, exponent), exponent));
        non_finite = _mm_or_si128(non_finite, _mm_cmpeq_epi32(_mm_and_si128(b, exponent), exponent));
        non_finite = _mm_or_si128(non_finite, _mm_cmpeq_epi32(_mm_and_si128(c, exponent), exponent));
        _mm_storeu_si128((__m128i *)record,
                         _mm_or_si128(_mm_and_si128(a, first_three), _mm_shuffle_epi8(colors, word[0])));
        _mm_storeu_si128((__m128i *)(record + 4),
                         _mm_or_si128(_mm_and_si128(_mm_alignr_epi8(b, a, 12), first_three),
                                      _mm_shuffle_epi8(colors, word[1])));
        _mm_storeu_si128((__m128i *)(record + 8),
                         _mm_or_si128(_mm_and_si128(_mm_alignr_epi8(c, b, 8), first_three),
                                      _mm_shuffle_epi8(colors, word[2])));
        _mm_storeu_si128((__m128i *)(record + 12),
                         _mm_or_si128(_mm_srli_si128(c, 4), _mm_shuffle_epi8(colors, word[3])));
    }
    uint32_t all_finite = _mm_movemask_epi8(non_finite) == 0;
    return all_finite & pack_with_colors_scalar(point, rgb, record, count - index);
}
#endif

static uint32_t pack_with_colors(const uint32_t *point, const uint8_t *rgb, uint32_t *record, Py_ssize_t count) {
#ifdef HAVE_X86_SIMD
    if (__builtin_cpu_supports("ssse3")) {
        return pack_with_colors_ssse3(point, rgb, record, count);
    }
#endif
    return pack_with_colors_scalar(point, rgb, record, count);
}

PyDoc_STRVAR(pack_points_doc,
"pack_points(points, colors, count, out) -> all_finite\n\n"
"Interleaves float32 (N, 3) points and, when colors (uint8 (N, 3)) is not None, a native-endian\n"
"0x00RRGGBB word per point into out: 12 or 16 bytes per point. Returns whether every coordinate is finite.");

static PyObject *pack_points(PyObject *self, PyObject *args) {
    Py_buffer points, out;
    PyObject *colors_object;
    Py_ssize_t count;
    if (!PyArg_ParseTuple(args, "y*Onw*", &points, &colors_object, &count, &out)) {
        return NULL;
    }
    Py_buffer colors = {0};
    int with_colors = colors_object != Py_None;
    if (with_colors && PyObject_GetBuffer(colors_object, &colors, PyBUF_C_CONTIGUOUS) < 0) {
        PyBuffer_Release(&points);
        PyBuffer_Release(&out);
        return NULL;
    }
    Py_ssize_t step = with_colors ? 16 : 12;
    if (count < 0 || check_length("points", points.len, count * 12) < 0
        || (with_colors && check_length("colors", colors.len, count * 3) < 0)
        || check_length("out", out.len, count * step) < 0) {
        if (count < 0) PyErr_SetString(PyExc_ValueError, "pack_points: negative count");
        PyBuffer_Release(&points);
        PyBuffer_Release(&out);
        if (with_colors) PyBuffer_Release(&colors);
        return NULL;
    }
    uint32_t all_finite;
    Py_BEGIN_ALLOW_THREADS
    all_finite = with_colors ? pack_with_colors(points.buf, colors.buf, out.buf, count)
                             : pack_xyz(points.buf, out.buf, count);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&points);
    PyBuffer_Release(&out);
    if (with_colors) PyBuffer_Release(&colors);
    return PyBool_FromLong((long)all_finite);
}

static PyMethodDef methods[] = {
    {"gather_points", gather_points, METH_VARARGS, gather_points_doc},
    {"pack_points", pack_points, METH_VARARGS, pack_points_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_cloud_kernels",
    "PointCloud2 <-> numpy kernels for the common float32 layout (see hamster_ros/conversions.py).", -1, methods,
};

PyMODINIT_FUNC PyInit__cloud_kernels(void) { return PyModule_Create(&module); }
