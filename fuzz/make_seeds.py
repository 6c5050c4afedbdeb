#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (small, real-format files) into corpus/."""
import json, os, struct

HERE = os.path.dirname(os.path.abspath(__file__))

def put(target, name, data):
    with open(os.path.join(HERE, "corpus", target, name), "wb") as f:
        f.write(data)

def idx_images(count, rows, cols):
    return struct.pack(">IIII", 0x803, count, rows, cols) + bytes((7 * i + j) % 256 for i in range(count) for j in range(rows * cols))

def idx_labels(labels):
    return struct.pack(">II", 0x801, len(labels)) + bytes(labels)

def idx_input(flags, images, labels):
    return bytes([flags]) + struct.pack(">H", len(images)) + images + labels

imgs, labs = idx_images(2, 3, 3), idx_labels([1, 7])
for flags in range(4):
    put("idx", f"pair-flags{flags}", idx_input(flags, imgs, labs))
put("idx", "mnist-shape", idx_input(0, idx_images(1, 28, 28), idx_labels([9])))
put("idx", "non-square", idx_input(1, idx_images(3, 2, 5), idx_labels([0, 1, 2])))
put("idx", "truncated", idx_input(0, imgs[:-3], labs))
put("idx", "huge-dims", idx_input(0, struct.pack(">IIII", 0x803, 0xFFFFFFFF, 0xFFFF, 0xFFFF), labs))

def safetensors(tensors, meta):
    header, data = {"__metadata__": meta}, b""
    for name, shape, values in tensors:
        raw = struct.pack(f"<{len(values)}f", *values)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data

def vals(n, k):
    return [((i * 37 + k) % 19 - 9) / 10 for i in range(n)]

meta = lambda spec, shape, k: {"format": "pt", "spec": spec, "input_shape": shape, "num_classes": str(k)}
put("model_file", "mlp", safetensors(
    [("1.weight", [3, 4], vals(12, 1)), ("1.bias", [3], vals(3, 2)), ("3.weight", [2, 3], vals(6, 3)), ("3.bias", [2], vals(2, 4))],
    meta("flatten,fc3,relu,fc2", "1,2,2", 2)))
put("model_file", "conv", safetensors(
    [("0.weight", [2, 1, 3, 3], vals(18, 1)), ("0.bias", [2], vals(2, 2)), ("4.weight", [2, 8], vals(16, 3)), ("4.bias", [2], vals(2, 4))],
    {**meta("conv2k3,relu,pool2,flatten,fc2", "1,6,6", 2), "seed": "3", "init": "kaiming-normal"}))
put("model_file", "missing-tensor", safetensors([("1.weight", [3, 4], vals(12, 1))], meta("flatten,fc3,relu,fc2", "1,2,2", 2)))
put("model_file", "no-metadata", safetensors([("0.weight", [1, 1], [1.0])], {}))

for i, s in enumerate(["lenet5", "mlp:784-600-600-10", "mlp:144-8-10", "conv6k5p2,relu,pool2,conv16k5,relu,pool2,flatten,fc120,relu,fc84,relu,fc10",
                       "conv4k3s2p1,relu,flatten,fc5", "conv3k3,relu,pool2,flatten,fc10", "flatten,fc8,relu,fc3", " fc2 , relu ,fc1",
                       "conv0k3", "fc", "pool2,pool2,pool2,flatten,fc1"]):
    put("spec", f"spec{i}", s.encode())

# plan: layers, per-layer neuron counts and scores, then the amount kind and values.
def plan(num_layers, widths, kind, payload):
    b = bytes([num_layers])
    for w in widths:
        b += bytes([w]) + b"".join(struct.pack("<h", (j * 1237) % 8000 - 1000) + b"\0" * 6 for j in range(w))
    return b + bytes([kind]) + payload
half = struct.pack("<h", 4096) + b"\0" * 6
put("plan", "ratio", plan(2, [5, 4], 0, half))
put("plan", "ratios", plan(2, [5, 4], 1, bytes([2]) + half + half))
put("plan", "global-selected", plan(3, [3, 6, 2], 0x82, half + bytes([2, 0, 2])))
put("plan", "threshold", plan(2, [9, 9], 3, struct.pack("<h", 8192) + b"\0" * 6))
put("plan", "nan-ratio", plan(1, [4], 0, struct.pack("<d", float("nan"))))
put("plan", "maxdrop", plan(1, [4], 4, half))
