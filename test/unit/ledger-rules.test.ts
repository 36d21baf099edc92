// Pure ledger rules: what "same content" means for an idempotency key, and placeholder detection.
import { describe, expect, it } from 'vitest';
import { isPlaceholder } from '../../src/api/common.js';
import { contentHash } from '../../src/ledger/ledger.js';

describe('contentHash', () => {
  const lines = [
    { account: { wallet: 'c1' }, amount: -5 },
    { account: { system: 'revenue' }, amount: 5 },
  ];

  it('ignores the order of lines', () => {
    expect(contentHash({ type: 't', lines })).toBe(
      contentHash({ type: 't', lines: [...lines].reverse() }),
    );
  });

  it('changes with the type, an amount or an account', () => {
    const base = contentHash({ type: 't', lines });
    expect(contentHash({ type: 'u', lines })).not.toBe(base);
    expect(
      contentHash({
        type: 't',
        lines: [
          { ...lines[0]!, amount: -6 },
          { ...lines[1]!, amount: 6 },
        ],
      }),
    ).not.toBe(base);
    expect(
      contentHash({ type: 't', lines: [{ ...lines[0]!, account: { wallet: 'c2' } }, lines[1]!] }),
    ).not.toBe(base);
  });
});

describe('isPlaceholder', () => {
  it.each(['', '  ', '<email>', 'null', 'undefined', 'NULL', '{id}', ':ref', '${ID}'])(
    'flags %j',
    (v) => {
      expect(isPlaceholder(v)).toBe(true);
    },
  );
  it.each(['ana@example.com', 'crm-42', '7f1c2d4e-8a9b-4c3d-9e8f-0a1b2c3d4e5f', 'nullable-co'])(
    'accepts %j',
    (v) => {
      expect(isPlaceholder(v)).toBe(false);
    },
  );
});
