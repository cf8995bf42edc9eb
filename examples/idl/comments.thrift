// The services of the tdist comment-pipeline demo.
//
// Generate with the Apache Thrift compiler 0.17:
//   thrift --gen rs -out examples/src/thrift_gen examples/idl/comments.thrift
//   thrift --gen py -out <dir> examples/idl/comments.thrift

namespace py tdist_comments

/// A user comment submitted to the site.
struct Comment {
  1: string id
  2: string author
  3: string text
  4: optional i64 posted_at_ms
}

/// What the spam checker concluded.
enum Verdict {
  HAM = 1
  SPAM = 2
  UNSURE = 3
}

/// Spam probability in [0, 1] and the verdict derived from it.
struct SpamScore {
  1: double score
  2: Verdict verdict
  3: optional string reason
}

/// The comment cannot be checked (empty text, missing id, ...).
exception InvalidComment {
  1: string message
}

/// Scores comments for spam.
service SpamCheck {
  /// Scores one comment.
  SpamScore check(1: Comment comment) throws (1: InvalidComment invalid)

  /// Moderator feedback on an earlier verdict (fire and forget).
  oneway void report(1: string comment_id, 2: Verdict verdict)
}

/// The outcome of posting a comment.
struct PostResult {
  1: string id
  2: bool published
  3: SpamScore score
}

/// Accepts comments; calls SpamCheck before publishing.
service Comments {
  PostResult post(1: Comment comment) throws (1: InvalidComment invalid)
}
