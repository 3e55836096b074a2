//! Unit tests of the approval state: signing, grants used once, self-approval, waivers.
