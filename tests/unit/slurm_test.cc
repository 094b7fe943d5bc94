#include "slurm/slurm.h"

#include <stdlib.h>

#include <gtest/gtest.h>

namespace cryo::slurm {

TEST(SlurmMargin, LeavesRoomForAGrowingCheckpoint) {
  EXPECT_EQ(suggested_margin(0.5), 60);   // never below a minute
  EXPECT_EQ(suggested_margin(40), 90);    // 2 x 40 + 10, up to the next 30 s
  EXPECT_EQ(suggested_margin(100), 210);
  EXPECT_FALSE(margin_too_short(0.5, 30));
  EXPECT_TRUE(margin_too_short(12, 30));
  EXPECT_FALSE(margin_too_short(40, suggested_margin(40)));
}

TEST(SlurmBatch, ScriptExecsCryoWithTheSignalAndQuotesWords) {
  BatchSpec s;
  s.margin = 300;
  s.signal = "USR2";
  s.cryo_path = "/opt/cryo bin/cryo";
  s.cryo_global_args = {"--store", "/scratch/ckpt"};
  s.cryo_args = {"--every", "1h"};
  s.command = {"./solver", "input file.dat", "it's"};
  std::string text = batch_script(s);
  EXPECT_EQ(text.rfind("#!/bin/bash\n", 0), 0u);
  EXPECT_NE(text.find("#SBATCH --signal=B:USR2@300\n"), std::string::npos);
  EXPECT_NE(text.find("#SBATCH --requeue\n"), std::string::npos);
  EXPECT_NE(text.find("#SBATCH --open-mode=append\n"), std::string::npos);
  EXPECT_NE(text.find("\nexec '/opt/cryo bin/cryo' --store /scratch/ckpt run --checkpoint-on USR2 --every 1h -- "
                      "./solver 'input file.dat' 'it'\\''s'\n"),
            std::string::npos)
      << text;
}

}  // namespace cryo::slurm
