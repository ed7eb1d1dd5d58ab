"""The ctypes structs and constants in xent/_lib.py must match
include/xent/xent.h exactly: a C program compiled against the header prints
every field's offset and size, every struct's size and every enum value, and
the header's struct bodies are parsed to check that no field is missing."""

import ctypes
import os
import re
import shutil
import subprocess

import pytest

from xent import _lib as L

from conftest import HEADER_DIR

HEADER = os.path.join(HEADER_DIR, "xent", "xent.h")

CONSTANTS = [n for n in dir(L) if n.startswith("XENT_")]


def _c_program():
    lines = ["#include <stddef.h>", "#include <stdio.h>", '#include "xent/xent.h"', "int main(void) {"]
    for cname, (struct, _, _) in L.STRUCTS.items():
        lines.append('  printf("%s %%zu\\n", sizeof(%s));' % (cname, cname))
        for fname, _ in struct._fields_:
            lines.append(
                '  printf("%s.%s %%zu %%zu\\n", offsetof(%s, %s), sizeof(((%s*)0)->%s));'
                % (cname, fname, cname, fname, cname, fname)
            )
    for n in CONSTANTS:
        lines.append('  printf("%s %%lld\\n", (long long)(%s));' % (n, n))
    lines.append('  printf("XENT_ABI_VERSION_MACRO %d\\n", XENT_ABI_VERSION);')
    lines.append('  printf("XENT_VERSION_STRING_MACRO %s\\n", XENT_VERSION_STRING);')
    lines.append("  return 0;\n}")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def c_layout(tmp_path_factory):
    assert os.path.exists(HEADER), "header not found at %s (set XENT_INCLUDE_DIR)" % HEADER
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    assert cc, "a C compiler is needed to check the struct layouts against the header"
    d = tmp_path_factory.mktemp("abi")
    src = d / "layout.c"
    src.write_text(_c_program())
    exe = d / "layout"
    subprocess.run([cc, "-std=c99", "-Wall", "-Werror", "-I", HEADER_DIR, str(src), "-o", str(exe)], check=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    res = {}
    for line in out.splitlines():
        k, *v = line.split()
        res[k] = v
    return res


@pytest.mark.parametrize("cname", sorted(L.STRUCTS))
def test_struct_layout_matches_header(c_layout, cname):
    struct = L.STRUCTS[cname][0]
    assert int(c_layout[cname][0]) == ctypes.sizeof(struct), "sizeof(%s)" % cname
    for fname, _ in struct._fields_:
        off, size = (int(v) for v in c_layout["%s.%s" % (cname, fname)])
        f = getattr(struct, fname)
        assert (f.offset, f.size) == (off, size), "%s.%s: python (offset %d, size %d) != C (%d, %d)" % (
            cname,
            fname,
            f.offset,
            f.size,
            off,
            size,
        )


def _header_fields():
    text = open(HEADER).read()
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    out = {}
    for m in re.finditer(r"typedef struct (\w+) \{(.*?)\} \1;", text, flags=re.S):
        fields = []
        for decl in m.group(2).split(";"):
            decl = decl.strip()
            if decl:
                fields.append(re.findall(r"(\w+)\s*$", decl)[0])
        out[m.group(1)] = fields
    return out


def test_every_header_struct_is_mirrored_field_for_field():
    hf = _header_fields()
    assert set(hf) == set(L.STRUCTS), "structs in the header: %s" % sorted(hf)
    for cname, fields in hf.items():
        assert [f for f, _ in L.STRUCTS[cname][0]._fields_] == fields, cname


def test_constants_match_header(c_layout):
    for n in CONSTANTS:
        assert int(c_layout[n][0]) == getattr(L, n), n
    text = re.sub(r"/\*.*?\*/", "", open(HEADER).read(), flags=re.S)
    enum_names = set(re.findall(r"^\s*(XENT_[A-Z0-9_]+)\s*=", text, flags=re.M))
    assert enum_names <= set(CONSTANTS) | {
        "XENT_REDUCTION_NONE",
        "XENT_REDUCTION_MEAN",
        "XENT_REDUCTION_SUM",
        "XENT_REDUCTION_BATCHMEAN",
        "XENT_DIST_LOGITS",
        "XENT_DIST_LOG_PROBS",
        "XENT_DIST_PROBS",
        "XENT_DIVERGENCE_KL",
        "XENT_DIVERGENCE_JSD",
    }, enum_names - set(CONSTANTS)


def test_enum_values_used_by_python(c_layout, tmp_path):
    # The reductions / kinds / divergences the Python side sends.
    cc = shutil.which("cc") or shutil.which("gcc")
    src = tmp_path / "e.c"
    names = {
        "XENT_REDUCTION_NONE": L.REDUCTION_NONE,
        "XENT_REDUCTION_MEAN": L.REDUCTION_MEAN,
        "XENT_REDUCTION_SUM": L.REDUCTION_SUM,
        "XENT_REDUCTION_BATCHMEAN": L.REDUCTION_BATCHMEAN,
        "XENT_DIST_LOGITS": L.DIST_LOGITS,
        "XENT_DIST_LOG_PROBS": L.DIST_LOG_PROBS,
        "XENT_DIST_PROBS": L.DIST_PROBS,
        "XENT_DIVERGENCE_KL": L.DIVERGENCE_KL,
        "XENT_DIVERGENCE_JSD": L.DIVERGENCE_JSD,
    }
    body = "".join('  printf("%s %%d\\n", (int)%s);\n' % (n, n) for n in names)
    src.write_text('#include <stdio.h>\n#include "xent/xent.h"\nint main(void) {\n%s  return 0;\n}\n' % body)
    subprocess.run([cc, "-I", HEADER_DIR, str(src), "-o", str(tmp_path / "e")], check=True)
    out = subprocess.run([str(tmp_path / "e")], check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        n, v = line.split()
        assert names[n] == int(v), n


def test_abi_and_header_version(c_layout):
    assert int(c_layout["XENT_ABI_VERSION_MACRO"][0]) == L.ABI_VERSION
    assert c_layout["XENT_VERSION_STRING_MACRO"][0] == L.HEADER_VERSION


def test_args_init_defaults_as_documented():
    """The templates come from the library's *_args_init; spot-check the
    header's documented defaults through them."""
    a = L.cross_entropy_op.args()
    assert a.struct_size == ctypes.sizeof(L.CrossEntropyArgs)
    assert (a.logits_dtype, a.target_dtype, a.ignore_index, a.reduction, a.grad_scale, a.grad_dtype, a.num_threads) == (
        L.XENT_F32,
        L.XENT_I64,
        -100,
        L.REDUCTION_MEAN,
        1.0,
        L.XENT_DTYPE_AUTO,
        0,
    )
    assert (a.label_smoothing, a.z_loss, a.softcap) == (0.0, 0.0, 0.0)
