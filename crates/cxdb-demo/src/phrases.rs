//! The text of the simulation: support topics with realistic customer and
//! agent messages (positive and negative), internal notes, CSAT comments,
//! bot lines and automation errors.

/// What a conversation is about; decides team, bot intent, tags and text.
#[derive(Debug)]
pub(crate) struct Topic {
    pub(crate) name: &'static str,
    pub(crate) team: &'static str,
    pub(crate) intent: &'static str,
    /// Relative frequency among conversations not started by an order.
    pub(crate) weight: u32,
    pub(crate) openers: &'static [&'static str],
    pub(crate) agent_replies: &'static [&'static str],
}

pub(crate) const REFUND: usize = 0;
pub(crate) const DELIVERY: usize = 1;
pub(crate) const LOGIN: usize = 2;

pub(crate) const TOPICS: &[Topic] = &[
    Topic {
        name: "refund",
        team: "billing",
        intent: "refund_request",
        weight: 12,
        openers: &[
            "I want a refund, the item arrived broken.",
            "The product is not what was advertised. Please refund me.",
            "I returned the order two weeks ago and still have not received my refund!",
            "Hi, could you help me return an item? It doesn't fit.",
            "This is ridiculous, I've asked three times for my money back.",
        ],
        agent_replies: &[
            "I'm sorry about that! I've started the refund, it will show up in 3-5 business days.",
            "Could you send a photo of the damaged item so I can process the refund?",
            "I've issued a full refund to your original payment method.",
        ],
    },
    Topic {
        name: "delivery",
        team: "sales",
        intent: "order_status",
        weight: 14,
        openers: &[
            "Where is my package? It's been 10 days.",
            "My order says delivered but nothing arrived.",
            "Can I change the delivery address for my order?",
            "The tracking number doesn't work, it's very frustrating.",
            "Delivery was super fast, thanks! But one item is missing.",
        ],
        agent_replies: &[
            "I checked with the carrier: your parcel is out for delivery today.",
            "I'm sorry it's late. I've opened an investigation with the courier.",
            "I've updated the address, the new label is on its way.",
        ],
    },
    Topic {
        name: "login",
        team: "tech",
        intent: "password_reset",
        weight: 14,
        openers: &[
            "I can't log in, the password reset email never arrives.",
            "Your app keeps logging me out. This is so annoying!",
            "Two-factor code is not working, I'm locked out of my account.",
            "I can't sign in since the update, error 500.",
        ],
        agent_replies: &[
            "I've sent a new reset link, please check your spam folder too.",
            "We had a short outage on login, it is fixed now. Sorry for the trouble!",
            "I've reset your two-factor settings, you can log in again.",
        ],
    },
    Topic {
        name: "billing",
        team: "billing",
        intent: "billing_question",
        weight: 12,
        openers: &[
            "I was charged twice this month!",
            "Can I get an invoice with my company VAT number?",
            "Why did my subscription price go up? Nobody told me.",
            "My card was declined but I have money on it.",
        ],
        agent_replies: &[
            "You're right, that was a duplicate charge. I've refunded the second one.",
            "Here is the corrected invoice with your VAT number.",
            "The new price applies from your next renewal; I've applied a loyalty discount.",
        ],
    },
    Topic {
        name: "bug",
        team: "tech",
        intent: "technical_issue",
        weight: 10,
        openers: &[
            "The app crashes when I upload a photo.",
            "Export to CSV gives an empty file.",
            "The checkout page is broken on Safari.",
            "Notifications stopped working after the latest update, terrible.",
        ],
        agent_replies: &[
            "Thanks for the report! Our engineers reproduced it and a fix ships this week.",
            "Could you tell me which version of the app you are using?",
            "Please clear the cache and try again; that fixes it for most users.",
        ],
    },
    Topic {
        name: "product",
        team: "sales",
        intent: "product_info",
        weight: 12,
        openers: &[
            "Does the premium plan include API access?",
            "Is this jacket waterproof?",
            "Do you ship to Canada?",
            "Can I upgrade my plan in the middle of the month?",
        ],
        agent_replies: &[
            "Yes, premium includes full API access and priority support.",
            "We ship to Canada, delivery takes 5-7 business days.",
            "You can upgrade any time; we prorate the difference.",
        ],
    },
    Topic {
        name: "cancel",
        team: "billing",
        intent: "cancel_subscription",
        weight: 8,
        openers: &[
            "Please cancel my subscription.",
            "I want to close my account, the service is too expensive.",
            "How do I stop the automatic renewal?",
        ],
        agent_replies: &[
            "Sorry to see you go! Your subscription is cancelled at the end of the period.",
            "I can offer you 30% off for three months if you'd like to stay.",
        ],
    },
    Topic {
        name: "praise",
        team: "sales",
        intent: "feedback",
        weight: 5,
        openers: &[
            "Just wanted to say your team is amazing, thank you!",
            "Love the new feature, great job!",
            "Best customer service I've ever had.",
        ],
        agent_replies: &[
            "Thank you so much, that made our day!",
            "We really appreciate the kind words!",
        ],
    },
];

pub(crate) const CUSTOMER_POSITIVE: &[&str] = &[
    "Thanks, that worked!",
    "Perfect, thank you so much!",
    "Great, that solved it.",
    "Awesome, really appreciate the quick help!",
];
pub(crate) const CUSTOMER_NEGATIVE: &[&str] = &[
    "Still not working, this is really frustrating.",
    "Any update on this? I've been waiting for days.",
    "That didn't help at all.",
    "This is unacceptable, I want to speak to a manager.",
];
pub(crate) const CUSTOMER_NEUTRAL: &[&str] = &[
    "Here is the screenshot you asked for.",
    "My order number is in the previous email.",
    "OK, I'll try that and get back to you.",
    "I'm using the iPhone app, latest version.",
];
pub(crate) const CUSTOMER_NUDGE: &[&str] = &["Hello? Anyone there?", "Hi?", "Is anybody there??"];
pub(crate) const CUSTOMER_REOPEN: &[&str] = &[
    "The problem is back again.",
    "Sorry, it happened again today.",
    "You closed this but I never got the refund.",
];
pub(crate) const CUSTOMER_WANTS_HUMAN: &[&str] = &[
    "I want to talk to a human.",
    "Agent please",
    "That's not what I asked, can I talk to someone?",
];

pub(crate) const AGENT_GENERIC: &[&str] = &[
    "Thanks for reaching out! Let me look into this for you.",
    "Thanks for your patience, I'm checking with the team.",
    "Is there anything else I can help you with?",
    "Glad that's sorted! Have a great day.",
    "Could you share a few more details so I can help?",
];
pub(crate) const INTERNAL_NOTES: &[&str] = &[
    "Customer is a VIP, handle with care.",
    "Checked Stripe: duplicate charge confirmed.",
    "Escalating to tier 2, looks like a bug in the uploader.",
    "Same issue as last week's ticket, see linked order.",
    "Waiting on the warehouse to confirm stock.",
];

pub(crate) const CSAT_GOOD: &[&str] = &[
    "Super fast and friendly, thanks!",
    "Great support.",
    "Problem solved in minutes.",
];
pub(crate) const CSAT_BAD: &[&str] = &[
    "Took way too long to get an answer.",
    "Nobody actually fixed my problem.",
    "I had to repeat myself three times.",
];

pub(crate) const BOT_GREETING: &[&str] = &[
    "Hi! I'm the virtual assistant. I can help with orders, refunds and accounts.",
    "Hello! Here's what I found that might help.",
];
pub(crate) const BOT_FALLBACK: &[&str] = &[
    "Sorry, I didn't get that. Could you rephrase?",
    "I'm not sure I understand.",
];
pub(crate) const BOT_HANDOFF: &[&str] = &["Let me connect you with a member of our team."];
pub(crate) const BOT_RESOLVED: &[&str] = &["Happy to help! Is there anything else?"];

pub(crate) const AUTOMATION_ERRORS: &[&str] = &[
    "shopify API rate limit exceeded (429)",
    "timeout after 30s waiting for the store",
    "order not found in store",
    "webhook signature mismatch",
];

pub(crate) const FIRST_NAMES: &[&str] = &[
    "emma", "liam", "olivia", "noah", "ava", "lucas", "mia", "leo", "sofia", "jonas", "hana",
    "mateo", "amara", "yuki", "omar", "chloe", "ivan", "priya", "diego", "fatima",
];
pub(crate) const LAST_NAMES: &[&str] = &[
    "smith", "garcia", "muller", "rossi", "kim", "dubois", "nowak", "silva", "tanaka", "khan",
    "jensen", "lopez", "novak", "brown", "costa", "meyer",
];
pub(crate) const EMAIL_DOMAINS: &[&str] = &[
    "gmail.com",
    "outlook.com",
    "yahoo.com",
    "proton.me",
    "example.com",
];
