// Node.js through the C ABI (koffi) gives the C++ API's tokens and logits (tests/capi_reference.cpp):
//   node capi_node_check.mjs LIB MODEL FIXTURE_DIR REFERENCE_DIR
import { readFileSync } from 'node:fs';
import { openStackllama } from '../examples/node/answer.mjs';

const [lib, modelDir, fixtureDir, ref] = process.argv.slice(2);
const adapterDir = `${fixtureDir}/adapter`;
const sl = openStackllama(lib);
let failures = 0;
const check = (ok, what) => {
  if (!ok) { failures++; console.log(`FAIL: ${what}`); } else console.log(`ok: ${what}`);
};
const readIds = (name) => readFileSync(`${ref}/${name}`, 'utf8').trim().split(/\s+/).map(Number);
const readF32 = (name) => {
  const b = readFileSync(`${ref}/${name}`);
  return new Float32Array(b.buffer, b.byteOffset, b.length / 4);
};

const prompt = readFileSync(`${ref}/prompt.txt`, 'utf8');
const model = sl.loadModel(modelDir, 2);
check(JSON.stringify(sl.encode(model, prompt)) === JSON.stringify(readIds('prompt.ids')), 'prompt ids');
const adapter = sl.loadAdapter(model, adapterDir);
const merged = sl.mergeAdapter(model, adapter, 0.75);

for (const name of ['base', 'adapter', 'merged']) {
  const m = name === 'merged' ? merged : model;
  const gen = sl.createGenerator(m);
  if (name === 'adapter') sl.check(sl.c.generator_attach(gen, adapter, 0.75));
  const pieces = [];
  const r = sl.generate(gen, prompt, 32, (p) => pieces.push(p));
  check(JSON.stringify(r.tokens) === JSON.stringify(readIds(`${name}.tokens`)), `${name} tokens`);
  check(r.text === readFileSync(`${ref}/${name}.text`, 'utf8'), `${name} text`);
  check(pieces.join('') === r.text, `${name} streamed text`);
  const logits = sl.evalAll(gen, m, sl.encode(m, prompt));
  const expected = readF32(`${name}.logits.f32`);
  let maxDiff = logits.length === expected.length ? 0 : Infinity;
  for (let i = 0; i < expected.length && i < logits.length; ++i)
    maxDiff = Math.max(maxDiff, Math.abs(logits[i] - expected[i]));
  check(maxDiff === 0, `${name} logits (max |diff| ${maxDiff})`);
  // An attached adapter cannot be freed.
  if (name === 'adapter') {
    check(sl.c.adapter_free(adapter) === 1 && /still attached/.test(sl.c.last_error()),
          'freeing an attached adapter is refused');
  }
  sl.c.generator_free(gen);
}
// Sampling with the settings and a seed.
{
  const gen = sl.createGenerator(model);
  const r = sl.generate(gen, prompt, 32, null,
                        { do_sample: 1, temperature: 0.9, top_k: 100, top_p: 0.95, seed: 42 });
  check(JSON.stringify(r.tokens) === JSON.stringify(readIds('sampled.tokens')), 'sampled tokens');
  sl.c.generator_free(gen);
}
sl.check(sl.c.adapter_free(adapter));
sl.c.model_free(merged);
sl.c.model_free(model);
console.log(failures ? `${failures} failures` : 'all Node checks passed');
process.exitCode = failures ? 1 : 0;
