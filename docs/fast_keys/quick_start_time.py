"""Times the README's quick start, part by part (its code as written, in a temporary folder); an argument sets the
key's number of reference ingrainers instead of the default.

    python docs/fast_keys/quick_start_time.py      # as written
    python docs/fast_keys/quick_start_time.py 32   # a key with 32 references
"""

import os
import sys
import tempfile
import time

references = {"num_reference_keys": int(sys.argv[1])} if len(sys.argv) > 1 else {}

with tempfile.TemporaryDirectory() as folder:
    os.chdir(folder)
    marks = [("start", time.perf_counter())]

    from hf_ingrain import IngrainConfig, IngrainTrainer, WatermarkKey, verify
    from hf_ingrain.data import load_image_dataset
    from hf_ingrain.models import SmallCNNConfig, SmallCNNForImageClassification

    splits = load_image_dataset()
    key = WatermarkKey.generate(num_labels=10, input_shape=(1, 28, 28), num_carriers=100)
    marks.append(("imports, data, key drawn", time.perf_counter()))
    key.train_ingrainer(benign_dataset=splits["owner"], show_progress=False, **references)
    marks.append((f"key.train_ingrainer ({references.get('num_reference_keys', 16)} references)", time.perf_counter()))
    key.commit_queries(splits["test"])
    key.save("owner_key/")
    model = SmallCNNForImageClassification(SmallCNNConfig(num_labels=10))
    args = IngrainConfig(output_dir="watermarked", ingrain_lambda=0.5, ingrain_temperature=4.0, num_train_epochs=15,
                         per_device_train_batch_size=64, learning_rate=1e-3, report_to="none", disable_tqdm=True)
    trainer = IngrainTrainer(model=model, args=args, train_dataset=splits["owner"], ingrainer=key)
    trainer.train()
    trainer.save_model()
    marks.append(("commit, save, IngrainTrainer 15 epochs", time.perf_counter()))
    result = verify(model, key, splits["test"])
    marks.append(("verify", time.perf_counter()))
    print(result)
    for (_, before), (name, after) in zip(marks, marks[1:]):
        print(f"{name}: {after - before:.1f} s")
    print(f"total: {marks[-1][1] - marks[0][1]:.1f} s")
