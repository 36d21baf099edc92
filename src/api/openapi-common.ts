// Answers every /v1 operation can give whatever the route: the rate limits (429) and a
// dependency that is briefly unavailable (503: Temporal, or the identity provider's keys). They
// are added to the generated document here, once, rather than repeated on every route.
type Operations = Partial<Record<string, { responses?: Record<string, unknown> }>>;

const retryAfter = {
  description: 'Seconds to wait before sending the same request again.',
  schema: { type: 'integer', minimum: 1 },
} as const;

const rateLimitHeaders = {
  'RateLimit-Limit': {
    description: 'Requests allowed per window for the tighter of the two limits (IP, account).',
    schema: { type: 'integer' },
  },
  'RateLimit-Remaining': {
    description: 'Requests left in the current window for that limit.',
    schema: { type: 'integer' },
  },
  'RateLimit-Reset': {
    description: 'Seconds until the current window ends.',
    schema: { type: 'integer' },
  },
} as const;

const errorContent = {
  'application/json': { schema: { $ref: '#/components/schemas/Error' } },
} as const;

const COMMON_RESPONSES = {
  '429': {
    description:
      'Too many requests (`rate_limited`) from this address or for this account; nothing was done.',
    headers: { 'Retry-After': retryAfter, ...rateLimitHeaders },
    content: errorContent,
  },
  '503': {
    description:
      'A dependency is briefly unavailable (`temporal_unavailable`, `auth_keys_unavailable`); nothing was started, the same request can be sent again.',
    headers: { 'Retry-After': retryAfter },
    content: errorContent,
  },
} as const;

const METHODS = ['get', 'put', 'post', 'delete', 'patch'] as const;

/** Adds the shared 429 and 503 answers to every /v1 operation that does not declare its own. */
export function withCommonResponses<T extends { paths?: object }>(doc: T): T {
  const paths = (doc.paths ?? {}) as Record<string, Operations>;
  for (const [path, item] of Object.entries(paths)) {
    if (!path.startsWith('/v1/')) continue;
    for (const method of METHODS) {
      const operation = item[method];
      if (!operation) continue;
      operation.responses ??= {};
      for (const [status, response] of Object.entries(COMMON_RESPONSES)) {
        operation.responses[status] ??= structuredClone(response);
      }
    }
  }
  return doc;
}
