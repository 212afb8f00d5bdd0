/**
 * How a send the cluster queues is cut, whoever queues it (`POST /api/transfers`, a schedule's run): fixed in the
 * row when queued, so that every attempt, on any member, restarts the same way.
 */

/** Article length: 4 KiB. */
export const QUEUED_ARTICLE_SIZE = 4096
/** Sync spacing in articles: a sync point every 1 MiB. */
export const QUEUED_ARTICLES_PER_SYNC = 256
